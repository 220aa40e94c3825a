/*
 * In-guest verifier: hashes the first multiboot module and reports on COM1.
 *
 * Why: a ROM's "ok" proves nothing about the bytes it holds (late MTFTP joiners print
 * ok over zero-filled images), and stock ROMs have no digest commands.  Booted by
 * iPXE as `kernel verifier.elf expect=<sha256> size=<n>` + `module payload`, this
 * prints the module's SHA-256 and length, a verdict, and ends QEMU through
 * isa-debug-exit (iobase 0xf4) so the host sees the verdict in QEMU's exit status.
 *
 * Output (each line ends with CR LF):
 *   VERIFY start
 *   VERIFY modules=<k> first=<start hex>-<end hex>
 *   VERIFY sha256=<64 hex> bytes=<n>
 *   VERIFY PASS | VERIFY FAIL expected=<hex> [size=<n>] | VERIFY NOEXPECT | VERIFY FAIL no-module
 * Exit values (QEMU status = value << 1 | 1): see images/verifier.py.
 */
#include <stdint.h>

#include "sha256.h"

#define EXIT_PASS 0x10
#define EXIT_FAIL 0x11
#define EXIT_NOEXPECT 0x12
#define EXIT_ERROR 0x13

#define MULTIBOOT_BOOTLOADER_MAGIC 0x2BADB002
#define MBI_CMDLINE (1u << 2)
#define MBI_MODS (1u << 3)

#define COM1 0x3f8
#define DEBUG_EXIT_PORT 0xf4

struct multiboot_info {
    uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
};

struct multiboot_module {
    uint32_t mod_start, mod_end, string, reserved;
};

/* gcc may emit calls to these even in freestanding code. */
void *memset(void *dst, int c, uint32_t n);
void *memcpy(void *dst, const void *src, uint32_t n);
void verifier_main(uint32_t magic, const struct multiboot_info *mbi);

void *memset(void *dst, int c, uint32_t n)
{
    uint8_t *d = dst;
    while (n--)
        *d++ = (uint8_t)c;
    return dst;
}

void *memcpy(void *dst, const void *src, uint32_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

static inline void outb(uint16_t port, uint8_t value)
{
    __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}

static inline uint8_t inb(uint16_t port)
{
    uint8_t value;
    __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
    return value;
}

static void serial_init(void)
{
    outb(COM1 + 1, 0x00);  /* no interrupts */
    outb(COM1 + 3, 0x80);  /* divisor latch */
    outb(COM1 + 0, 0x01);  /* 115200 baud */
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);  /* 8N1 */
    outb(COM1 + 2, 0xc7);  /* FIFO on, cleared */
    outb(COM1 + 4, 0x03);  /* DTR, RTS */
}

static void putc_serial(char c)
{
    for (uint32_t spin = 0; spin < 100000 && !(inb(COM1 + 5) & 0x20); spin++)
        ;
    outb(COM1, (uint8_t)c);
}

static void puts_serial(const char *s)
{
    while (*s)
        putc_serial(*s++);
}

static void put_hex32(uint32_t v)
{
    static const char digits[] = "0123456789abcdef";
    puts_serial("0x");
    for (int shift = 28; shift >= 0; shift -= 4)
        putc_serial(digits[(v >> shift) & 0xf]);
}

static void put_dec(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts_serial(&buf[i]);
}

static void end_line(void)
{
    puts_serial("\r\n");
}

static __attribute__((noreturn)) void finish(uint8_t code)
{
    outb(DEBUG_EXIT_PORT, code);  /* QEMU with isa-debug-exit stops here */
    puts_serial("VERIFY halted (no isa-debug-exit device)\r\n");
    for (;;)
        __asm__ volatile("cli; hlt");
}

/* Value of `key=` in the command line (a pointer into it, ended by space or NUL), or 0. */
static const char *find_arg(const char *cmdline, const char *key)
{
    for (const char *p = cmdline; p && *p; p++) {
        if (p != cmdline && p[-1] != ' ')
            continue;
        const char *k = key, *q = p;
        while (*k && *q == *k) {
            k++;
            q++;
        }
        if (!*k && *q == '=')
            return q + 1;
    }
    return 0;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parse 64 hex digits into 32 bytes; 0 on anything else. */
static int parse_digest(const char *s, uint8_t out[32])
{
    for (int i = 0; i < 32; i++) {
        int hi = hex_value(s[2 * i]), lo = hex_value(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return s[64] == 0 || s[64] == ' ';
}

/* Parse a decimal size; 0 if malformed or above 4 GiB - 1. */
static int parse_size(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    int digits = 0;
    for (; *s >= '0' && *s <= '9'; s++, digits++) {
        uint32_t d = (uint32_t)(*s - '0');
        if (v > (0xffffffffu - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    if (!digits || (*s && *s != ' '))
        return 0;
    *out = v;
    return 1;
}

static void put_digest(const uint8_t digest[32])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        putc_serial(digits[digest[i] >> 4]);
        putc_serial(digits[digest[i] & 0xf]);
    }
}

static void put_arg(const char *s)
{
    for (int i = 0; i < 80 && s[i] && s[i] != ' '; i++)
        putc_serial(s[i]);
}

void verifier_main(uint32_t magic, const struct multiboot_info *mbi)
{
    serial_init();
    end_line();
    puts_serial("VERIFY start");
    end_line();
    if (magic != MULTIBOOT_BOOTLOADER_MAGIC) {
        puts_serial("VERIFY ERROR not booted by a multiboot loader, eax=");
        put_hex32(magic);
        end_line();
        finish(EXIT_ERROR);
    }

    const char *cmdline = (mbi->flags & MBI_CMDLINE) ? (const char *)mbi->cmdline : "";
    uint32_t mods = (mbi->flags & MBI_MODS) ? mbi->mods_count : 0;
    if (mods == 0) {
        puts_serial("VERIFY FAIL no-module");
        end_line();
        finish(EXIT_FAIL);
    }
    const struct multiboot_module *mod = (const struct multiboot_module *)mbi->mods_addr;
    puts_serial("VERIFY modules=");
    put_dec(mods);
    puts_serial(" first=");
    put_hex32(mod->mod_start);
    putc_serial('-');
    put_hex32(mod->mod_end);
    if (mods > 1)
        puts_serial(" (hashing the first only)");
    end_line();

    uint32_t length = mod->mod_end - mod->mod_start;
    struct sha256 ctx;
    uint8_t digest[32];
    sha256_init(&ctx);
    sha256_update(&ctx, (const uint8_t *)mod->mod_start, length);
    sha256_final(&ctx, digest);
    puts_serial("VERIFY sha256=");
    put_digest(digest);
    puts_serial(" bytes=");
    put_dec(length);
    end_line();

    const char *expect_arg = find_arg(cmdline, "expect");
    const char *size_arg = find_arg(cmdline, "size");
    uint8_t expected[32];
    uint32_t size = 0;
    if (!expect_arg || !parse_digest(expect_arg, expected)) {
        puts_serial("VERIFY NOEXPECT");
        if (expect_arg) {
            puts_serial(" malformed expect=");
            put_arg(expect_arg);
        }
        end_line();
        finish(EXIT_NOEXPECT);
    }
    int size_given = size_arg && parse_size(size_arg, &size);
    int digest_ok = 1;
    for (int i = 0; i < 32; i++)
        digest_ok &= digest[i] == expected[i];
    int size_ok = !size_given || size == length;
    if (digest_ok && size_ok) {
        puts_serial("VERIFY PASS");
        end_line();
        finish(EXIT_PASS);
    }
    puts_serial("VERIFY FAIL expected=");
    put_digest(expected);
    if (!size_ok) {
        puts_serial(" size=");
        put_dec(size);
    }
    end_line();
    finish(EXIT_FAIL);
}
