"""Running things: a lab and its services, one boot, the matrix, trains and full boots."""
