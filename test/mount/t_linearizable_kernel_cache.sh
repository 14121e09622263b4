#!/bin/bash
# The linearizability workload on --kernel-cache mounts, with buffered reads
# (through the kernel's page cache) and O_DIRECT writes: 0 violations.
export KERNEL_CACHE=1
export HISTORIES=${HISTORIES:-30}
exec "$(dirname "$0")/t_linearizable.sh"
