// Export of the autograd graph to Graphviz DOT (chapter 2, docs/02-autograd.md).
#include "attend/dot.hpp"

#include <unordered_map>

#include "attend/autograd.hpp"

namespace attend::io {

std::string to_dot(const Tensor& root) {
  std::string s =
      "digraph attend {\n"
      "  rankdir=LR;\n"
      "  node [fontname=\"Helvetica\", fontsize=10];\n";
  // A tensor is known by its autograd fields (what the graph's edges hold);
  // a constant input, which has none, by its edge.
  std::unordered_map<const void*, std::string> ids;  // tensor -> DOT node id
  auto tensor_id = [&](const void* key, bool& is_new) {
    auto [it, inserted] = ids.try_emplace(key, "t" + std::to_string(ids.size()));
    is_new = inserted;
    return it->second;
  };
  auto declare_tensor = [&](const std::string& id, const std::string& name, const Shape& shape,
                            const AutogradMeta* meta) {
    const bool requires_grad = meta && meta->requires_grad, leaf = !meta || !meta->grad_fn;
    std::string label = name.empty() ? "" : name + "\\n";
    label += to_string(shape);
    if (requires_grad) label += leaf ? "\\nleaf, requires_grad" : "\\nrequires_grad";
    const char* fill = leaf && requires_grad ? "lightblue" : "white";
    s += "  " + id + " [shape=box, style=filled, fillcolor=" + fill + ", label=\"" + label + "\"];\n";
  };

  bool is_new = false;
  const AutogradMeta* root_meta = root.impl()->autograd.get();
  declare_tensor(tensor_id(root_meta ? static_cast<const void*>(root_meta) : root.impl().get(), is_new), root.name(),
                 root.shape(), root_meta);
  std::vector<const AutogradMeta*> stack;
  if (root_meta) stack.push_back(root_meta);
  int op_count = 0;
  while (!stack.empty()) {  // an explicit stack: graphs may be deep
    const AutogradMeta* meta = stack.back();
    stack.pop_back();
    const Node* node = meta->grad_fn.get();
    if (!node) continue;
    const std::string op_id = "op" + std::to_string(op_count++);
    // A node freed by backward() has lost its inputs: say so rather than draw nothing.
    const std::string label = node->released ? node->op + "\\n(freed by backward)" : node->op;
    s += "  " + op_id + " [shape=ellipse, label=\"" + label + "\"];\n";
    s += "  " + op_id + " -> " + ids.at(meta) + ";\n";
    for (const Edge& input : node->inputs) {
      if (!input.defined) continue;  // an optional input left out (a Linear without bias)
      const AutogradMeta* input_meta = input.autograd.get();
      const std::string id = tensor_id(input_meta ? static_cast<const void*>(input_meta) : &input, is_new);
      if (is_new) {
        declare_tensor(id, input.name, input.shape, input_meta);
        if (input_meta) stack.push_back(input_meta);
      }
      s += "  " + id + " -> " + op_id + ";\n";
    }
  }
  return s + "}\n";
}

}  // namespace attend::io
