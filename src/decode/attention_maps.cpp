// Attention maps: record every attention layer's weights during one forward
// pass and draw them as a page of labelled heatmaps, one per layer and head.
// Chapter 9 (docs/09-decoding.md).
#include <algorithm>

#include "attend/autograd.hpp"
#include "attend/decode.hpp"

namespace attend::decode {

namespace {

// Every MultiHeadAttention of the model, in a fixed order, with where its
// weights go in the maps.
struct Recorder {
  nn::MultiHeadAttention* attention;
  std::vector<Tensor>* destination;
};

std::vector<Recorder> recorders(nn::Seq2SeqTransformer& model, AttentionMaps& maps) {
  std::vector<Recorder> out;
  for (size_t i = 0; i < model.encoder->layers->size(); ++i) {
    out.push_back({model.encoder->layers->at<nn::TransformerEncoderLayer>(i).self_attn.get(), &maps.encoder_self});
  }
  for (size_t i = 0; i < model.decoder->layers->size(); ++i) {
    auto& layer = model.decoder->layers->at<nn::TransformerDecoderLayer>(i);
    out.push_back({layer.self_attn.get(), &maps.decoder_self});
    out.push_back({layer.multihead_attn.get(), &maps.cross});
  }
  return out;
}

}  // namespace

AttentionMaps attention_maps(nn::Seq2SeqTransformer& model, const Tensor& src, const Tensor& tgt_in) {
  NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  AttentionMaps maps;
  const std::vector<Recorder> all = recorders(model, maps);
  for (const Recorder& r : all) r.attention->record_weights = true;
  model.forward(src, tgt_in);  // each attention keeps its weights (B, H, Tq, Tk)
  for (const Recorder& r : all) {
    r.destination->push_back(r.attention->last_weights);
    r.attention->record_weights = false;
    r.attention->last_weights = Tensor();
  }
  model.train(was_training);
  return maps;
}

io::svg::Canvas draw_attention_maps(const AttentionMaps& maps, int64_t row, const std::vector<std::string>& source,
                                const std::vector<std::string>& decoder_inputs,
                                const std::vector<std::string>& outputs, const std::string& title) {
  // The three kinds of attention: what the rows and the columns are.
  struct Section {
    std::string name;
    const std::vector<Tensor>* layers;
    const std::vector<std::string>* rows;
    const std::vector<std::string>* cols;
  };
  const Section sections[] = {
      {"Encoder self-attention (rows: source token asking, columns: source token looked at)", &maps.encoder_self,
       &source, &source},
      {"Decoder self-attention (rows: the token being written, columns: the output so far)", &maps.decoder_self,
       &outputs, &decoder_inputs},
      {"Cross-attention (rows: the token being written, columns: source tokens)", &maps.cross, &outputs, &source},
  };
  const double gap = 12.0, heading = 26.0, margin = 14.0;
  // Draw every heatmap first, to size the page.
  std::vector<std::vector<std::vector<io::svg::Canvas>>> drawn;  // [section][layer][head]
  double width = 0.0, height = margin + 40.0;
  for (const Section& s : sections) {
    drawn.emplace_back();
    if (s.layers->empty()) continue;
    height += heading;
    for (size_t layer = 0; layer < s.layers->size(); ++layer) {
      const Tensor w = (*s.layers)[layer].select(0, row);  // (H, rows, cols)
      if (w.size(1) != static_cast<int64_t>(s.rows->size()) || w.size(2) != static_cast<int64_t>(s.cols->size())) {
        throw Error("draw_attention_maps: weights " + to_string(w.shape()) + " for " + std::to_string(s.rows->size()) +
                    " row labels and " + std::to_string(s.cols->size()) + " column labels");
      }
      drawn.back().emplace_back();
      double row_width = margin, row_height = 0.0;
      for (int64_t head = 0; head < w.size(0); ++head) {
        io::svg::Heatmap h;
        h.title = "layer " + std::to_string(layer) + ", head " + std::to_string(head);
        h.rows = w.size(1);
        h.cols = w.size(2);
        for (float v : w.select(0, head).to_vector()) h.values.push_back(v);
        h.row_labels = *s.rows;
        h.col_labels = *s.cols;
        h.max_value = 1.0;  // the same scale everywhere: white = 0, dark = all of the attention
        drawn.back().back().push_back(io::svg::draw_heatmap(h));
        row_width += drawn.back().back().back().width() + gap;
        row_height = std::max(row_height, drawn.back().back().back().height());
      }
      width = std::max(width, row_width + margin);
      height += row_height + gap;
    }
  }
  io::svg::Canvas page(std::max(width, 640.0), height + margin);
  page.text(margin, margin + 14.0, title, 16.0);
  page.text(margin, margin + 32.0, "white = 0, dark blue = 1 (each row is a softmax and sums to 1)", 11.0,
            io::svg::Anchor::Start, "#555555");
  double y = margin + 40.0;
  for (size_t k = 0; k < drawn.size(); ++k) {
    if (drawn[k].empty()) continue;
    page.text(margin, y + 18.0, sections[k].name, 13.0, io::svg::Anchor::Start, "#000000");
    y += heading;
    for (const auto& layer : drawn[k]) {
      double x = margin, row_height = 0.0;
      for (const io::svg::Canvas& c : layer) {
        page.draw_canvas(c, x, y);
        x += c.width() + gap;
        row_height = std::max(row_height, c.height());
      }
      y += row_height + gap;
    }
  }
  return page;
}

}  // namespace attend::decode
