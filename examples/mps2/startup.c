/* Minimal startup for the Arm MPS2 AN385 (Cortex-M3) / AN386 (Cortex-M4) boards under
 * QEMU, with semihosting for output and exit status. Link with mps2.ld.
 *
 *   qemu-system-arm -M mps2-an386 -nographic -semihosting -kernel firmware.elf
 *
 * Reset: copy .data from flash, zero .bss, enable the FPU when built for hard float,
 * run the C++ constructors, call main() and hand its return value to QEMU. When
 * TFLite Micro's cortex_m_generic DebugLog is linked in, its output (MicroPrintf) is
 * routed to the semihosting console.
 *
 * Link with newlib's nano.specs and nosys.specs (stubs for the file and process calls
 * that libc's stdio and abort() reference). */
#include <stdint.h>

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start[], __bss_end[];
extern uint32_t __stack_top[];
extern void (*__init_array_start[])(void);
extern void (*__init_array_end[])(void);
int main(void);

/* TFLM's cortex_m_generic/debug_log_callback.h; weak so this file links without TFLM. */
void RegisterDebugLogCallback(void (*cb)(const char *s)) __attribute__((weak));

#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUN_TIME_ERROR 0x20023

static int semihost(int op, const void *arg) {
  register int r0 __asm__("r0") = op;
  register const void *r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

void semihost_puts(const char *s) { semihost(SYS_WRITE0, s); }

__attribute__((noreturn)) void semihost_exit(int status) {
  /* 32-bit SYS_EXIT carries a reason, not a code: QEMU exits 0 for ApplicationExit, 1 otherwise. */
  semihost(SYS_EXIT, (const void *)(uintptr_t)(status == 0 ? ADP_STOPPED_APPLICATION_EXIT
                                                           : ADP_STOPPED_RUN_TIME_ERROR));
  for (;;) {
  }
}

/* newlib's abort() ends here. */
__attribute__((noreturn)) void _exit(int status) { semihost_exit(status); }

/* A bare-metal main() never returns into a C runtime that would run static destructors, so
 * registering them (function-local statics with destructors do) is a no-op; crtbegin.o,
 * which would define __dso_handle, is not linked (-nostartfiles). */
void *__dso_handle = 0;
int __cxa_atexit(void (*destructor)(void *), void *object, void *dso) {
  (void)destructor, (void)object, (void)dso;
  return 0;
}

__attribute__((noreturn)) void Reset_Handler(void) {
  for (uint32_t *src = __data_load, *dst = __data_start; dst < __data_end;) *dst++ = *src++;
  for (uint32_t *dst = __bss_start; dst < __bss_end;) *dst++ = 0;
#if defined(__ARM_FP)
  *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20; /* CPACR: full access to CP10/CP11 */
  __asm__ volatile("dsb\n\tisb");
#endif
  if (RegisterDebugLogCallback) RegisterDebugLogCallback(semihost_puts);
  for (void (**f)(void) = __init_array_start; f < __init_array_end; ++f) (*f)();
  semihost_exit(main());
}

__attribute__((noreturn)) static void Fault_Handler(void) {
  semihost_puts("fault\n");
  semihost_exit(1);
}

/* Initial stack pointer, then the exception handlers (ARMv7-M: 16 entries). */
__attribute__((section(".vectors"), used)) static void *const vectors[16] = {
    __stack_top, (void *)Reset_Handler, (void *)Fault_Handler, (void *)Fault_Handler,
    (void *)Fault_Handler, (void *)Fault_Handler, (void *)Fault_Handler, 0, 0, 0, 0,
    (void *)Fault_Handler, (void *)Fault_Handler, 0, (void *)Fault_Handler,
    (void *)Fault_Handler,
};
