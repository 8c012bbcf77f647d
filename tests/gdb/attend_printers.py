# gdb pretty-printers for Attend's tensors (chapter 1's layout, chapter 2's
# autograd fields): `print x` shows a tensor's shape, strides, offset, dtype,
# device, requires_grad, grad_fn and its first values instead of an opaque
# shared_ptr, in gdb and in an editor's variable pane. Load it in gdb with
#     source tests/gdb/attend_printers.py
# (docs/01-tensors.md, "Stepping through in a debugger"). Checked by
# `make check-gdb` (tests/gdb/check.sh). Reads libstdc++'s containers (g++,
# and clang++ on Linux by default).
import gdb
import gdb.printing

FIRST_VALUES = 8  # how many values to show


def _pointer(shared_ptr):
    """The raw pointer inside a std::shared_ptr (libstdc++)."""
    return shared_ptr["_M_ptr"]


def _vector(vec):
    """(first element pointer, size) of a std::vector (libstdc++)."""
    impl = vec["_M_impl"]
    start = impl["_M_start"]
    return start, int(impl["_M_finish"] - start)


def _int_vector(vec):
    start, size = _vector(vec)
    return [int((start + i).dereference()) for i in range(size)]


def _string(s):
    return s["_M_dataplus"]["_M_p"].string(length=int(s["_M_string_length"]))


def _tuple(values):
    """(2, 3), (5,) and () as Attend and Python write shapes."""
    if len(values) == 1:
        return "(%d,)" % values[0]
    return "(" + ", ".join(str(v) for v in values) + ")"


def _has_field(value, name):
    return any(f.name == name for f in value.type.strip_typedefs().fields())


def _enum_name(value):
    """Float32 for attend::DType::Float32."""
    return str(value).split("::")[-1]


def describe_impl(impl):
    """The one-line summary of a TensorImpl (a gdb.Value of that type)."""
    shape = _int_vector(impl["shape"])
    strides = _int_vector(impl["strides"])
    offset = int(impl["offset"])
    storage_ptr = _pointer(impl["storage"])
    parts = ["shape=" + _tuple(shape), "strides=" + _tuple(strides), "offset=%d" % offset]
    values = "?"
    dtype = "?"
    device = "cpu"  # Attend's storage lives on the host unless it says otherwise
    if int(storage_ptr) != 0:
        storage = storage_ptr.dereference()
        dtype = _enum_name(storage["dtype"]).lower()
        if _has_field(storage, "device"):
            device = _enum_name(storage["device"]).lower()
        buffer = storage["floats"] if dtype == "float32" else storage["indices"]
        start, size = _vector(buffer)
        if device != "cpu":
            size = 0  # the values are in device memory, which the host cannot read
        numel = 1
        for s in shape:
            numel *= s
        shown = []
        index = [0] * len(shape)
        for _ in range(min(numel, FIRST_VALUES)):
            at = offset + sum(i * s for i, s in zip(index, strides))
            if at < 0 or at >= size:
                shown.append("<on the device>" if device != "cpu" else "<out of storage>")
                break
            v = (start + at).dereference()
            shown.append("%.6g" % float(v) if dtype == "float32" else str(int(v)))
            for d in reversed(range(len(shape))):  # the odometer: the last dim turns fastest
                index[d] += 1
                if index[d] < shape[d]:
                    break
                index[d] = 0
        values = "[" + ", ".join(shown) + (", ...]" if numel > FIRST_VALUES else "]")
    parts += ["dtype=" + dtype, "device=" + device]
    requires_grad = False
    grad_fn = "none"
    autograd_ptr = _pointer(impl["autograd"])
    if int(autograd_ptr) != 0:
        meta = autograd_ptr.dereference()
        requires_grad = bool(meta["requires_grad"])
        node_ptr = _pointer(meta["grad_fn"])
        if int(node_ptr) != 0:
            grad_fn = _string(node_ptr.dereference()["op"])
    parts += ["requires_grad=" + ("true" if requires_grad else "false"), "grad_fn=" + grad_fn]
    name = _string(impl["name"])
    if name:
        parts.append('name="%s"' % name)
    parts.append("values=" + values)
    return " ".join(parts)


class TensorPrinter:
    """attend::Tensor: a handle (shared_ptr) to a TensorImpl."""

    def __init__(self, value):
        self.value = value

    def to_string(self):
        impl_ptr = _pointer(self.value["impl_"])
        if int(impl_ptr) == 0:
            return "attend::Tensor (undefined)"
        return "attend::Tensor " + describe_impl(impl_ptr.dereference())


class TensorImplPrinter:
    def __init__(self, value):
        self.value = value

    def to_string(self):
        return "attend::TensorImpl " + describe_impl(self.value)


def build_printers():
    printers = gdb.printing.RegexpCollectionPrettyPrinter("attend")
    printers.add_printer("Tensor", "^attend::Tensor$", TensorPrinter)
    printers.add_printer("TensorImpl", "^attend::TensorImpl$", TensorImplPrinter)
    return printers


gdb.printing.register_pretty_printer(gdb.current_objfile(), build_printers(), replace=True)
