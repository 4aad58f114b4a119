/* startup_mps2.c: reset code for QEMU's MPS2 boards, with newlib's semihosting stdio
 * (--specs=rdimon.specs). Copies .data, zeroes .bss, opens the semihosting console, reads
 * the command line QEMU was given (-semihosting-config ...,arg=prog,arg=in.bin) into
 * argv and exits with main's status. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern void __stack_top(void); /* a linker symbol: declared as a function for the vector table */
extern void initialise_monitor_handles(void);
int main(int argc, char **argv);

static char cmdline[256];
static char *args[16];

static int semihost(int op, void *arg) {
  register int r0 __asm__("r0") = op;
  register void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static int split_command_line(void) {
  struct { char *buf; int len; } block = {cmdline, (int)sizeof cmdline - 1};
  int argc = 0;
  char *c = cmdline;
  if (semihost(0x15 /* SYS_GET_CMDLINE */, &block) != 0) return 0;
  cmdline[block.len] = 0;
  while (*c && argc < 15) {
    while (*c == ' ') *c++ = 0;
    if (*c) args[argc++] = c;
    while (*c && *c != ' ') ++c;
  }
  return argc;
}

void Reset_Handler(void) {
  uint32_t *src = __data_load, *dst;
  int argc;
  for (dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (dst = __bss_start; dst < __bss_end;) *dst++ = 0;
  initialise_monitor_handles();
  argc = split_command_line();
  exit(main(argc, args));
}

static void Fault_Handler(void) { exit(3); }

/* exit() runs newlib's fini array, which calls _fini (crti.o is not linked: -nostartfiles) */
void _init(void) {}
void _fini(void) {}

/* initial stack pointer, reset, then the ARMv7-M exception handlers */
__attribute__((section(".isr_vector"), used)) static void (*const vectors[16])(void) = {
    __stack_top, Reset_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    Fault_Handler, 0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, Fault_Handler};
