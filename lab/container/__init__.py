"""The lab in a container: the runner image (``lab container``) and the in-container smoke."""
