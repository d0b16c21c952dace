/*
 * PVH entry for xvif.
 *
 * Xen (and QEMU's -kernel loader) enter here in 32-bit protected mode with
 * paging off and %ebx = physical address of struct hvm_start_info
 * (xen/include/public/arch-x86/hvm/start_info.h).
 *
 * We zero .bss, build an identity map of the first 4 GiB with 2 MiB pages,
 * enable long mode and call `xvif_main(start_info_paddr)`.
 *
 * Control registers are only ever WRITTEN with absolute values: the nested
 * SVM emulation used in tests returns stale values for CR2/CR3/CR4 reads.
 */

    .section .note.Xen, "a", @note
    .balign 4
    .long 4                     /* namesz: "Xen\0" */
    .long 8                     /* descsz */
    .long 18                    /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .text.boot, "ax", @progbits
    .code32
    .globl pvh_start32
pvh_start32:
    cli
    cld
    mov     %ebx, %esi                  /* keep start_info pointer */

    /* Zero .bss (loaders zero-fill, but do not rely on it). */
    mov     $__bss_start, %edi
    mov     $__bss_end, %ecx
    sub     %edi, %ecx
    shr     $2, %ecx
    xor     %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT; PDPT[0..3] -> PD0..PD3 (4 x 512 x 2 MiB = 4 GiB). */
    mov     $boot_pdpt, %eax
    or      $0x3, %eax                  /* present | writable */
    mov     %eax, boot_pml4

    mov     $boot_pd, %eax
    or      $0x3, %eax
    mov     $boot_pdpt, %edi
    mov     $4, %ecx
1:  mov     %eax, (%edi)
    add     $0x1000, %eax
    add     $8, %edi
    loop    1b

    mov     $boot_pd, %edi
    mov     $0x83, %eax                 /* present | writable | 2 MiB page */
    xor     %edx, %edx                  /* high dword of the physical address */
    mov     $2048, %ecx
2:  mov     %eax, (%edi)
    mov     %edx, 4(%edi)
    add     $0x200000, %eax
    adc     $0, %edx
    add     $8, %edi
    loop    2b

    /* CR4 = PAE (absolute value). */
    mov     $0x20, %eax
    mov     %eax, %cr4
    mov     $boot_pml4, %eax
    mov     %eax, %cr3

    /* EFER: LME | NXE. */
    mov     $0xC0000080, %ecx
    rdmsr
    or      $0x900, %eax
    wrmsr

    /* CR0 = PG | WP | NE | ET | MP | PE (absolute value). */
    mov     $0x80010033, %eax
    mov     %eax, %cr0

    lgdt    boot_gdt_desc
    ljmp    $0x08, $long_mode_entry

    .code64
long_mode_entry:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    xor     %eax, %eax
    mov     %ax, %fs
    mov     %ax, %gs

    mov     $__stack_top, %rsp
    xor     %ebp, %ebp                  /* terminates frame-pointer backtraces */
    mov     %esi, %edi                  /* arg0: start_info physical address */
    push    $0                          /* fake return address, 16-byte alignment */
    jmp     xvif_main

    .section .rodata.boot_gdt, "a", @progbits
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff            /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
boot_gdt_end:
boot_gdt_desc:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot_tables, "aw", @nobits
    .balign 4096
boot_pml4:  .space 4096
boot_pdpt:  .space 4096
boot_pd:    .space 4 * 4096
