/* Same test as repro.S, but the loop runs in 64-bit long mode with 4-level
   paging (2 MiB pages, identity map of 4 GiB) and a TSS whose IST1 gives #DF
   its own stack, like xvif.  Enters at the PVH 32-bit entry point.
   Knobs (--defsym): TMODE COUNT ITERS PROG HLT (see repro.S). */

    .set APIC,     0xfee00000
    .set A_EOI,    APIC+0xb0
    .set A_SVR,    APIC+0xf0
    .set A_LVTT,   APIC+0x320
    .set A_ICR,    APIC+0x380
    .set A_CCR,    APIC+0x390
    .set A_DCR,    APIC+0x3e0
    .set TVEC,     0x40
    .set MAGIC,    0x5a5aa5a5c3c33c3c

    .section .note.Xen, "a", @note
    .align 4
    .long 4, 4, 18          /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .long _start

    .ifndef OPCPUID
    .set OPCPUID, 0
    .endif
    .macro OP
    .if OPCPUID
    cpuid
    .else
    rdtsc
    .endif
    .endm

    .text
    .code32
    .globl _start
_start:
    cli
    mov  $stack_top, %esp
    lgdt gdt_desc
    ljmp $0x08, $1f
1:  mov  $0x10, %ax
    mov  %ax, %ds
    mov  %ax, %es
    mov  %ax, %ss
    mov  %ax, %fs
    mov  %ax, %gs
    /* page tables: pml4[0] -> pdpt; pdpt[0..3] -> pd[0..3]; 2048 x 2 MiB */
    xor  %ecx, %ecx
2:  mov  %ecx, %eax
    shl  $21, %eax
    or   $0x83, %eax
    mov  %eax, pd(,%ecx,8)
    mov  %ecx, %eax
    shr  $11, %eax                   /* bits 32+ of the address */
    mov  %eax, pd+4(,%ecx,8)
    inc  %ecx
    cmp  $2048, %ecx
    jne  2b
    movl $(pd + 0x0003), pdpt
    movl $(pd + 0x1003), pdpt+8
    movl $(pd + 0x2003), pdpt+16
    movl $(pd + 0x3003), pdpt+24
    movl $(pdpt + 3), pml4
    /* TSS descriptor base */
    mov  $tss, %eax
    mov  %ax, gdt_tss+2
    shr  $16, %eax
    mov  %al, gdt_tss+4
    mov  %ah, gdt_tss+7
    movl $df_stack_top, tss+36       /* IST1 */
    mov  $0x20, %eax                 /* CR4.PAE */
    mov  %eax, %cr4
    mov  $pml4, %eax
    mov  %eax, %cr3
    mov  $0xc0000080, %ecx           /* EFER.LME */
    rdmsr
    or   $0x100, %eax
    wrmsr
    mov  $0x80010033, %eax
    mov  %eax, %cr0
    ljmp $0x18, $long_entry

    .code64
long_entry:
    mov  $0x10, %ax
    mov  %ax, %ds
    mov  %ax, %es
    mov  %ax, %ss
    mov  $stack_top, %rsp
    mov  $0x28, %ax
    ltr  %ax
    /* IDT: 256 64-bit interrupt gates; #DF (8) on IST1 */
    xor  %ecx, %ecx
3:  mov  stub_table(,%rcx,4), %eax
    mov  %ecx, %edx
    shl  $4, %edx
    mov  %ax, idt(%rdx)
    movw $0x18, idt+2(%rdx)
    movw $0x8e00, idt+4(%rdx)
    cmp  $8, %ecx
    jne  4f
    movw $0x8e01, idt+4(%rdx)
4:  shr  $16, %eax
    mov  %ax, idt+6(%rdx)
    movl $0, idt+8(%rdx)
    inc  %ecx
    cmp  $256, %ecx
    jne  3b
    lidt idt_desc

    mov  $s_hello, %esi
    call puts
    mov  $APIC, %r15d
    movl $0x1ff, 0xf0(%r15)
    movl $0x10000, 0x350(%r15)       /* mask LINT0 (ExtINT from a PIC) */
    movl $0x10000, 0x360(%r15)       /* mask LINT1 */
    movl $0xb, 0x3e0(%r15)
    .if TMODE == 0
    movl $(TVEC | (1 << 17)), 0x320(%r15)
    .else
    movl $TVEC, 0x320(%r15)
    .endif
    movl $COUNT, 0x380(%r15)

    mov  $MAGIC, %rbx
    mov  %rbx, %r13
    xor  %r12, %r12
    rdtsc
    mov  %eax, last_tsc
    mov  %edx, last_tsc+4

main_loop:
    cli
    sti
    OP                               /* A: in the STI shadow */
    call check
    cli
    OP
    sti
    OP                               /* B */
    call check
    OP
    OP                               /* plain, IF=1 */
    call check
    .if HLT
    cli
    OP
    sti
    hlt
    OP                               /* C: after sti; hlt */
    call check
    .endif
    inc  %r12
    test $(PROG-1), %r12
    jnz  5f
    call progress
5:  .if ITERS
    cmp  $ITERS, %r12
    jne  main_loop
    .else
    jmp  main_loop
    .endif
    cli
    call progress
    mov  $s_done, %esi
    call puts
6:  cli
    hlt
    jmp  6b

check:
    .if OPCPUID
    mov  %r13, %rbx
    ret
    .endif
    mov  $MAGIC, %rcx
    cmp  %rcx, %rbx
    jne  bad_rbx
    shl  $32, %rdx
    or   %rax, %rdx
    cmp  last_tsc, %rdx
    jae  1f
    incl nonmono
1:  mov  %rdx, last_tsc
    ret
bad_rbx:
    cli
    mov  $s_badrbx, %esi
    call puts
    jmp  6b

progress:
    pushf
    push %rax
    push %rsi
    cli
    mov  $s_it, %esi
    call puts
    mov  %r12d, %eax
    call puthex
    mov  $s_tmr, %esi
    call puts
    mov  timer_count, %eax
    call puthex
    mov  $s_nonmono, %esi
    call puts
    mov  nonmono, %eax
    call puthex
    mov  $s_tsc, %esi
    call puts
    mov  last_tsc+4, %eax
    call puthex
    mov  last_tsc, %eax
    call puthex
    call nl
    pop  %rsi
    pop  %rax
    popf
    ret

puts:
    push %rax
1:  lodsb
    test %al, %al
    jz   2f
    outb %al, $0xe9
    jmp  1b
2:  pop  %rax
    ret
nl:
    push %rax
    mov  $'\n', %al
    outb %al, $0xe9
    pop  %rax
    ret
puthex:                              /* eax as 8 hex digits */
    push %rax
    push %rcx
    push %rdx
    mov  %eax, %edx
    mov  $8, %ecx
1:  rol  $4, %edx
    mov  %edx, %eax
    and  $0xf, %eax
    movb hexdig(%rax), %al
    outb %al, $0xe9
    loop 1b
    pop  %rdx
    pop  %rcx
    pop  %rax
    ret

    .section .data.stubs, "aw"
    .align 4
stub_table:
    .text
    .set vec, 0
    .rept 256
1:
    .if (vec == 8) || ((vec >= 10) && (vec <= 14)) || (vec == 17) || (vec == 21) || (vec == 29) || (vec == 30)
    .else
    pushq $0
    .endif
    pushq $vec
    jmp  int_common
    .pushsection .data.stubs
    .long 1b
    .popsection
    .set vec, vec+1
    .endr

int_common:                          /* vec 40, err 48, rip 56, cs 64, rfl 72, rsp 80 */
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    mov  40(%rsp), %rax
    cmp  $TVEC, %rax
    jne  1f
    incl timer_count
    .if TMODE == 1
    movl $COUNT, 0x380(%r15)
    .endif
    movl $0, 0xb0(%r15)
    jmp  9f
1:  cmp  $0xff, %rax
    jne  2f
    incl spur_count
    jmp  9f
2:  cmp  $32, %rax
    jb   3f
    mov  $s_unexp, %esi
    jmp  4f
3:  mov  $s_exc, %esi
4:  call puts
    mov  40(%rsp), %eax
    call puthex
    mov  $s_err, %esi
    call puts
    mov  48(%rsp), %eax
    call puthex
    mov  $s_eip, %esi
    call puts
    mov  56(%rsp), %eax
    call puthex
    mov  $s_efl, %esi
    call puts
    mov  72(%rsp), %eax
    call puthex
    mov  $s_rsp, %esi
    call puts
    mov  80(%rsp), %eax
    call puthex
    mov  $s_itc, %esi
    call puts
    mov  %r12d, %eax
    call puthex
    call nl
5:  cli
    hlt
    jmp  5b
9:  pop  %rdi
    pop  %rsi
    pop  %rdx
    pop  %rcx
    pop  %rax
    add  $16, %rsp
    iretq

    .section .rodata
hexdig:    .ascii "0123456789abcdef"
s_hello:   .asciz "REPRO start (64-bit, paging)\n"
s_it:      .asciz "REPRO it="
s_tmr:     .asciz " tmr="
s_nonmono: .asciz " nonmono="
s_tsc:     .asciz " tsc="
s_done:    .asciz "REPRO DONE\n"
s_exc:     .asciz "REPRO EXC v="
s_unexp:   .asciz "REPRO UNEXPECTED v="
s_err:     .asciz " err="
s_eip:     .asciz " rip="
s_efl:     .asciz " rfl="
s_rsp:     .asciz " rsp="
s_itc:     .asciz " it="
s_badrbx:  .asciz "REPRO RBX CORRUPT\n"

    .data
    .align 16
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08 code32 */
    .quad 0x00cf92000000ffff        /* 0x10 data */
    .quad 0x00af9a000000ffff        /* 0x18 code64 */
    .quad 0                         /* 0x20 unused */
gdt_tss:                            /* 0x28 TSS (16 bytes) */
    .quad 0x0000890000000067
    .quad 0
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt
idt_desc:
    .word 256*16 - 1
    .quad idt

    .bss
    .align 4096
pml4:       .space 4096
pdpt:       .space 4096
pd:         .space 4*4096
idt:        .space 256*16
tss:        .space 104
    .align 8
timer_count: .long 0
spur_count: .long 0
nonmono:    .long 0
    .align 8
last_tsc:   .quad 0
    .align 16
    .space 8192
df_stack_top:
    .space 16384
stack_top:
