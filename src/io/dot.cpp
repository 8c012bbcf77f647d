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
  std::unordered_map<const TensorImpl*, std::string> ids;  // tensor -> DOT node id
  std::vector<std::shared_ptr<TensorImpl>> stack{root.impl()};

  auto tensor_id = [&](const std::shared_ptr<TensorImpl>& impl, bool& is_new) {
    auto [it, inserted] = ids.try_emplace(impl.get(), "t" + std::to_string(ids.size()));
    is_new = inserted;
    return it->second;
  };
  auto declare_tensor = [&](const std::string& id, const Tensor& t) {
    std::string label = t.name().empty() ? "" : t.name() + "\\n";
    label += to_string(t.shape());
    if (t.requires_grad()) label += t.is_leaf() ? "\\nleaf, requires_grad" : "\\nrequires_grad";
    const char* fill = t.is_leaf() && t.requires_grad() ? "lightblue" : "white";
    s += "  " + id + " [shape=box, style=filled, fillcolor=" + fill + ", label=\"" + label +
         "\"];\n";
  };

  bool is_new = false;
  declare_tensor(tensor_id(root.impl(), is_new), root);
  int op_count = 0;
  while (!stack.empty()) {  // an explicit stack: graphs may be deep
    std::shared_ptr<TensorImpl> impl = stack.back();
    stack.pop_back();
    const Node* node = Tensor(impl).grad_fn().get();
    if (!node) continue;
    const std::string op_id = "op" + std::to_string(op_count++);
    // A node freed by backward() has lost its inputs: say so rather than draw nothing.
    const std::string label = node->released ? node->op + "\\n(freed by backward)" : node->op;
    s += "  " + op_id + " [shape=ellipse, label=\"" + label + "\"];\n";
    s += "  " + op_id + " -> " + ids.at(impl.get()) + ";\n";
    for (const Tensor& input : node->inputs) {
      if (!input.defined()) continue;
      const std::string id = tensor_id(input.impl(), is_new);
      if (is_new) {
        declare_tensor(id, input);
        stack.push_back(input.impl());
      }
      s += "  " + id + " -> " + op_id + ";\n";
    }
  }
  return s + "}\n";
}

}  // namespace attend::io
