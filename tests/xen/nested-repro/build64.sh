#!/bin/bash
# build64.sh NAME TMODE COUNT ITERS PROG HLT  -> NAME.elf (64-bit long mode variant)
set -e
cd "$(dirname "$0")"
n=$1; shift
as --64 --defsym TMODE=$1 --defsym COUNT=$2 --defsym ITERS=$3 --defsym PROG=$4 --defsym HLT=$5 --defsym OPCPUID=${6:-0} -o $n.o repro64.S
ld -m elf_x86_64 -T link.ld -o $n.elf $n.o
