#!/bin/sh
# `make check-gdb`: stops tests/gdb/tensors_for_gdb.cpp (built with -g) in gdb,
# prints its tensors through tests/gdb/attend_printers.py and checks each
# line against what the printer must show. Usage: tests/gdb/check.sh PROGRAM
set -u
program=$1
here=$(cd "$(dirname "$0")" && pwd)
out=$(gdb -batch -nx -ex "source $here/attend_printers.py" -ex "break look_here" -ex run -ex up \
  -ex "print x" -ex "print xt" -ex "print row" -ex "print w" -ex "print y" -ex "print big" \
  -ex "print ids" -ex "print none" -ex "print *x.impl_._M_ptr" "$program" 2>&1)
status=0
check() {
  if printf '%s\n' "$out" | grep -F -x -q -e "$1"; then
    echo "ok: $1"
  else
    echo "MISSING: $1"
    status=1
  fi
}
check '$1 = attend::Tensor shape=(2, 3) strides=(3, 1) offset=0 dtype=float32 device=cpu requires_grad=false grad_fn=none values=[0, 1, 2, 3, 4, 5]'
check '$2 = attend::Tensor shape=(3, 2) strides=(1, 3) offset=0 dtype=float32 device=cpu requires_grad=false grad_fn=none values=[0, 3, 1, 4, 2, 5]'
check '$3 = attend::Tensor shape=(3,) strides=(1,) offset=3 dtype=float32 device=cpu requires_grad=false grad_fn=none values=[3, 4, 5]'
check '$4 = attend::Tensor shape=(3,) strides=(1,) offset=0 dtype=float32 device=cpu requires_grad=true grad_fn=none name="w" values=[0.5, 0.5, 0.5]'
check '$5 = attend::Tensor shape=(3,) strides=(1,) offset=0 dtype=float32 device=cpu requires_grad=true grad_fn=mul values=[0.25, 0.25, 0.25]'
check '$6 = attend::Tensor shape=(20,) strides=(1,) offset=0 dtype=float32 device=cpu requires_grad=false grad_fn=none values=[0, 1, 2, 3, 4, 5, 6, 7, ...]'
check '$7 = attend::Tensor shape=(3,) strides=(1,) offset=0 dtype=int64 device=cpu requires_grad=false grad_fn=none values=[3, 1, 4]'
check '$8 = attend::Tensor (undefined)'
check '$9 = attend::TensorImpl shape=(2, 3) strides=(3, 1) offset=0 dtype=float32 device=cpu requires_grad=false grad_fn=none values=[0, 1, 2, 3, 4, 5]'
if [ "$status" -ne 0 ]; then
  echo "gdb printed:"
  printf '%s\n' "$out"
  echo "check-gdb: FAILED"
else
  echo "check-gdb: the pretty-printer shows every tensor as expected"
fi
exit $status
