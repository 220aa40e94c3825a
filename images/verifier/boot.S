/*
 * Entry of the in-guest verifier: a multiboot (v1) header, a stack, and a call to
 * verifier_main(magic, info).  Both iPXE's `kernel`/`boot` and QEMU's `-kernel`
 * enter here in 32-bit protected mode with flat segments and paging off.
 */

#define MULTIBOOT_MAGIC         0x1BADB002
#define MULTIBOOT_PAGE_ALIGN    0x00000001  /* modules on 4 KiB boundaries */
#define MULTIBOOT_MEMORY_INFO   0x00000002  /* ask for mem_lower/mem_upper */
#define MULTIBOOT_FLAGS         (MULTIBOOT_PAGE_ALIGN | MULTIBOOT_MEMORY_INFO)

        .section .multiboot, "a"
        .align 4
        .long MULTIBOOT_MAGIC
        .long MULTIBOOT_FLAGS
        .long -(MULTIBOOT_MAGIC + MULTIBOOT_FLAGS)

        .section .bss
        .align 16
stack_bottom:
        .skip 65536
stack_top:

        .section .text
        .globl _start
        .type _start, @function
_start:
        cli
        cld
        movl $stack_top, %esp
        xorl %ebp, %ebp
        pushl %ebx              /* multiboot information structure */
        pushl %eax              /* 0x2BADB002 from a multiboot loader */
        call verifier_main
halt:
        cli
        hlt
        jmp halt
        .size _start, . - _start

        .section .note.GNU-stack, "", @progbits
