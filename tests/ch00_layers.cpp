// The map of the code: the README's table of layers, checked against every
// #include in src/ and include/. A file may include its own layer and the
// layers below it, never one above. Tagged [ch00]: it belongs to no chapter
// and holds for all of them (README.md, "Layout of the repository").
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "catch_compat.hpp"
#include "test_files.hpp"

namespace fs = std::filesystem;

namespace {

// One row of the README's table: rank 0 is the top layer.
struct Layer {
  std::string name;
  int rank = 0;
  std::vector<std::string> folders;  // "src/nn"
  std::vector<std::string> headers;  // "nn.hpp"
};

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The cells of a Markdown table row "| a | b | c |".
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::string cell;
  for (size_t i = 1; i < row.size(); ++i) {
    if (row[i] == '|') {
      const size_t first = cell.find_first_not_of(' ');
      out.push_back(first == std::string::npos ? "" : cell.substr(first, cell.find_last_not_of(' ') - first + 1));
      cell.clear();
    } else {
      cell += row[i];
    }
  }
  return out;
}

// The table that follows the header row "| layer | folders | headers | ...".
std::vector<Layer> read_layer_table(const std::string& readme) {
  std::istringstream in(readme);
  std::vector<Layer> layers;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("| layer | folders | headers |", 0) == 0) {
      inside = true;
      continue;
    }
    if (!inside) continue;
    if (line.rfind("|---", 0) == 0) continue;
    if (line.empty() || line[0] != '|') break;
    const std::vector<std::string> c = cells(line);
    REQUIRE(c.size() >= 3);
    layers.push_back({c[0], static_cast<int>(layers.size()), words(c[1]), words(c[2])});
  }
  return layers;
}

struct Include {
  int line;
  std::string target;  // as written between the quotes
};

// The #include "..." lines of a source text (system includes <...> are not ours).
std::vector<Include> quoted_includes(const std::string& text) {
  std::istringstream in(text);
  std::vector<Include> out;
  int number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    const size_t hash = line.find_first_not_of(" \t");
    if (hash == std::string::npos || line.compare(hash, 8, "#include") != 0) continue;
    const size_t open = line.find('"', hash);
    if (open == std::string::npos) continue;
    const size_t close = line.find('"', open + 1);
    if (close == std::string::npos) continue;
    out.push_back({number, line.substr(open + 1, close - open - 1)});
  }
  return out;
}

// The checker itself, on a file's path (relative to the repository) and
// text: one message per include that points up the order or cannot be
// placed. Separate from the file walk so that a planted file can test it.
class LayerMap {
 public:
  explicit LayerMap(std::vector<Layer> layers) : layers_(std::move(layers)) {}

  const Layer* layer_of(const std::string& path) const {
    for (const Layer& layer : layers_) {
      for (const std::string& folder : layer.folders) {
        if (path.rfind(folder + "/", 0) == 0) return &layer;
      }
      for (const std::string& header : layer.headers) {
        if (path == "include/attend/" + header) return &layer;
      }
    }
    return nullptr;
  }

  std::vector<std::string> problems(const std::string& path, const std::string& text) const {
    std::vector<std::string> out;
    const Layer* from = layer_of(path);
    if (!from) return {path + ": not in the README's table of layers (add its folder or header)"};
    for (const Include& inc : quoted_includes(text)) {
      // "attend/x.hpp" is a public header; anything else is beside the file.
      const std::string target = inc.target.rfind("attend/", 0) == 0
                                     ? "include/" + inc.target
                                     : (fs::path(path).parent_path() / inc.target).lexically_normal().string();
      const Layer* to = layer_of(target);
      const std::string where = path + ":" + std::to_string(inc.line) + ": ";
      if (!to) {
        out.push_back(where + "includes \"" + inc.target + "\", which is in no layer of the README's table");
      } else if (to->rank < from->rank) {
        out.push_back(where + "includes \"" + inc.target + "\" (layer " + to->name + ") from layer " +
                      from->name + ": an include must point down the layers");
      }
    }
    return out;
  }

  const std::vector<Layer>& layers() const { return layers_; }

 private:
  std::vector<Layer> layers_;
};

LayerMap readme_layers() {
  const std::string root = ATTEND_SOURCE_DIR;
  std::vector<Layer> layers = read_layer_table(attend_test::read_file(root + "/README.md"));
  REQUIRE(layers.size() >= 10);
  return LayerMap(std::move(layers));
}

std::vector<std::string> source_files() {
  const fs::path root = ATTEND_SOURCE_DIR;
  std::vector<std::string> files;
  for (const char* dir : {"src", "include"}) {
    for (const auto& entry : fs::recursive_directory_iterator(root / dir)) {
      const std::string ext = entry.path().extension().string();
      if (entry.is_regular_file() && (ext == ".cpp" || ext == ".hpp" || ext == ".cu" || ext == ".cuh")) {
        files.push_back(fs::relative(entry.path(), root).generic_string());
      }
    }
  }
  std::sort(files.begin(), files.end());
  return files;
}

TEST_CASE("README's layer table: every include in src/ and include/ points down", "[ch00]") {
  const LayerMap map = readme_layers();
  const std::vector<std::string> files = source_files();
  REQUIRE(files.size() > 40);
  std::vector<std::string> problems;
  for (const std::string& file : files) {
    for (const std::string& p : map.problems(file, attend_test::read_file(std::string(ATTEND_SOURCE_DIR) + "/" + file))) {
      problems.push_back(p);
    }
  }
  for (const std::string& p : problems) UNSCOPED_INFO(p);
  CHECK(problems.empty());
}

TEST_CASE("README's layer table names only headers and folders that exist, each once", "[ch00]") {
  const LayerMap map = readme_layers();
  const fs::path root = ATTEND_SOURCE_DIR;
  std::map<std::string, int> seen;
  for (const Layer& layer : map.layers()) {
    for (const std::string& folder : layer.folders) {
      INFO("folder " << folder << " of layer " << layer.name);
      CHECK(fs::is_directory(root / folder));
      CHECK(++seen[folder] == 1);
    }
    for (const std::string& header : layer.headers) {
      INFO("header " << header << " of layer " << layer.name);
      CHECK(fs::is_regular_file(root / "include/attend" / header));
      CHECK(++seen[header] == 1);
    }
  }
  // Every public header has a row.
  for (const auto& entry : fs::directory_iterator(root / "include/attend")) {
    INFO(entry.path().string());
    CHECK(map.layer_of("include/attend/" + entry.path().filename().string()) != nullptr);
  }
}

TEST_CASE("The layer check catches a planted upward include, naming file, line and both layers", "[ch00]") {
  const LayerMap map = readme_layers();
  // tensor printing that reached up for autograd (as it once did):
  const std::string planted = "// printing\n#include \"attend/tensor.hpp\"\n#include \"attend/autograd.hpp\"\n";
  const std::vector<std::string> problems = map.problems("src/tensor/print.cpp", planted);
  REQUIRE(problems.size() == 1);
  CHECK(attend_test::contains(problems[0], "src/tensor/print.cpp:3:"));
  CHECK(attend_test::contains(problems[0], "(layer autograd) from layer tensor"));
  // The same include from above is fine, and so is a file beside it.
  CHECK(map.problems("src/ops/views.cpp", planted).empty());
  CHECK(map.problems("src/ops/matmul.cpp", "#include \"op_helpers.hpp\"\n").empty());
  // A header in no layer, and a file in no folder of the table, are named.
  CHECK(attend_test::contains(map.problems("src/nn/x.cpp", "#include \"attend/nowhere.hpp\"\n").at(0), "in no layer"));
  CHECK(attend_test::contains(map.problems("src/elsewhere/x.cpp", "").at(0), "not in the README's table"));
}

}  // namespace
