// The SVG writer: each Canvas call appends one line of XML text; a line plot
// is built from those same calls. Chapter 4 (docs/04-modules-and-optimizers.md);
// reused for loss curves (chapter 8) and attention heatmaps (chapter 9).
#include "attend/svg.hpp"
#include "attend/files.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>

#include "attend/error.hpp"

namespace attend::io::svg {

namespace {

// A coordinate as short text: at most two decimals, trailing zeros dropped
// ("12", "12.5", "0.25"), so the SVG source stays readable.
std::string number(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.2f", value);
  std::string s = buffer;
  while (s.back() == '0') s.pop_back();
  if (s.back() == '.') s.pop_back();
  if (s == "-0") s = "0";
  return s;
}

// A tick label: up to 4 significant digits, "0.0001", "250", "1e+04".
std::string tick_label(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.4g", value);
  return buffer;
}

// "#rrggbb" -> its three channels 0..255; throws for anything else.
void parse_color(const std::string& color, int rgb[3]) {
  auto hex_value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool ok = color.size() == 7 && color[0] == '#';
  for (int channel = 0; ok && channel < 3; ++channel) {
    const int high = hex_value(color[1 + 2 * channel]);
    const int low = hex_value(color[2 + 2 * channel]);
    ok = high >= 0 && low >= 0;
    rgb[channel] = 16 * high + low;
  }
  if (!ok) throw Error("io::svg::blend: '" + color + "' is not a color of the form #rrggbb");
}

}  // namespace

// --- colors and text ---

std::string blend(const std::string& from, const std::string& to, double t) {
  int a[3], b[3];
  parse_color(from, a);
  parse_color(to, b);
  t = std::clamp(t, 0.0, 1.0);
  char buffer[8];
  int mixed[3];
  for (int channel = 0; channel < 3; ++channel) {
    mixed[channel] = static_cast<int>(std::lround(a[channel] + t * (b[channel] - a[channel])));
  }
  std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", mixed[0], mixed[1], mixed[2]);
  return buffer;
}

std::string palette_color(size_t index) {
  // Ten colors that stay distinguishable next to each other.
  static const char* const colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                       "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
  return colors[index % 10];
}

std::string escape_xml(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

// --- Canvas ---

Canvas::Canvas(double width, double height, const std::string& background)
    : width_(width), height_(height) {
  if (!(width > 0.0 && height > 0.0)) {
    throw Error("io::svg::Canvas: width and height must be positive, got " + number(width) + " x " +
                number(height));
  }
  if (background != "none") {
    body_ += "<rect width=\"100%\" height=\"100%\" fill=\"" + escape_xml(background) + "\"/>\n";
  }
}

void Canvas::rect(double x, double y, double width, double height, const std::string& fill,
                  const std::string& stroke, double stroke_width) {
  body_ += "<rect x=\"" + number(x) + "\" y=\"" + number(y) + "\" width=\"" + number(width) +
           "\" height=\"" + number(height) + "\" fill=\"" + escape_xml(fill) + "\"";
  if (stroke != "none") {
    body_ += " stroke=\"" + escape_xml(stroke) + "\" stroke-width=\"" + number(stroke_width) + "\"";
  }
  body_ += "/>\n";
}

void Canvas::circle(double center_x, double center_y, double radius, const std::string& fill,
                    const std::string& stroke, double stroke_width) {
  body_ += "<circle cx=\"" + number(center_x) + "\" cy=\"" + number(center_y) + "\" r=\"" +
           number(radius) + "\" fill=\"" + escape_xml(fill) + "\"";
  if (stroke != "none") {
    body_ += " stroke=\"" + escape_xml(stroke) + "\" stroke-width=\"" + number(stroke_width) + "\"";
  }
  body_ += "/>\n";
}

void Canvas::line(double x1, double y1, double x2, double y2, const std::string& stroke,
                  double stroke_width, bool dashed) {
  body_ += "<line x1=\"" + number(x1) + "\" y1=\"" + number(y1) + "\" x2=\"" + number(x2) +
           "\" y2=\"" + number(y2) + "\" stroke=\"" + escape_xml(stroke) + "\" stroke-width=\"" +
           number(stroke_width) + "\"";
  if (dashed) body_ += " stroke-dasharray=\"4 3\"";
  body_ += "/>\n";
}

void Canvas::polyline(const std::vector<Point>& points, const std::string& stroke,
                      double stroke_width) {
  body_ += "<polyline fill=\"none\" stroke=\"" + escape_xml(stroke) + "\" stroke-width=\"" +
           number(stroke_width) + "\" stroke-linejoin=\"round\" points=\"";
  for (size_t i = 0; i < points.size(); ++i) {
    if (i > 0) body_ += ' ';
    body_ += number(points[i].x) + "," + number(points[i].y);
  }
  body_ += "\"/>\n";
}

void Canvas::text(double x, double y, const std::string& content, double font_size, Anchor anchor,
                  const std::string& fill, double rotate_degrees) {
  const char* anchor_name = anchor == Anchor::Start ? "start" : anchor == Anchor::Middle ? "middle" : "end";
  body_ += "<text x=\"" + number(x) + "\" y=\"" + number(y) + "\" font-size=\"" + number(font_size) +
           "\" text-anchor=\"" + anchor_name + "\" fill=\"" + escape_xml(fill) + "\"";
  if (rotate_degrees != 0.0) {
    body_ += " transform=\"rotate(" + number(rotate_degrees) + " " + number(x) + " " + number(y) + ")\"";
  }
  body_ += ">" + escape_xml(content) + "</text>\n";
}

void Canvas::begin_group(const std::string& transform) {
  body_ += "<g transform=\"" + escape_xml(transform) + "\">\n";
  ++open_groups_;
}

void Canvas::end_group() {
  if (open_groups_ == 0) throw Error("io::svg::Canvas::end_group: no group is open");
  body_ += "</g>\n";
  --open_groups_;
}

void Canvas::draw_canvas(const Canvas& other, double x, double y) {
  if (other.open_groups_ != 0) throw Error("io::svg::Canvas::draw_canvas: the other canvas has open groups");
  begin_group("translate(" + number(x) + ", " + number(y) + ")");
  body_ += other.body_;
  end_group();
}

std::string Canvas::to_string() const {
  if (open_groups_ != 0) {
    throw Error("io::svg::Canvas: " + std::to_string(open_groups_) + " group(s) still open (call end_group)");
  }
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + number(width_) + "\" height=\"" +
         number(height_) + "\" viewBox=\"0 0 " + number(width_) + " " + number(height_) +
         "\" font-family=\"sans-serif\">\n" + body_ + "</svg>\n";
}

void Canvas::save(const std::string& path) const {
  write_file_atomically(path, to_string());  // errors say "<path>: <problem>"
}

// --- line plot ---

std::vector<double> nice_ticks(double low, double high, int count) {
  if (!std::isfinite(low) || !std::isfinite(high) || low > high) {
    throw Error("io::svg::nice_ticks: need finite low <= high, got " + tick_label(low) + " and " +
                tick_label(high));
  }
  if (low == high) {  // one value: widen the range around it
    const double pad = low == 0.0 ? 1.0 : std::abs(low) * 0.1;
    low -= pad;
    high += pad;
  }
  // A raw step of range / count, rounded to 1, 2 or 5 times a power of ten.
  const double raw_step = (high - low) / std::max(count, 1);
  const double power = std::pow(10.0, std::floor(std::log10(raw_step)));
  const double fraction = raw_step / power;  // in [1, 10)
  const double step = power * (fraction < 1.5 ? 1.0 : fraction < 3.0 ? 2.0 : fraction < 7.0 ? 5.0 : 10.0);
  // The first tick at or below low, the last at or above high.
  const double first = std::floor(low / step + 1e-9);
  const double last = std::ceil(high / step - 1e-9);
  std::vector<double> ticks;
  for (double k = first; k <= last + 0.5; k += 1.0) {
    const double tick = k * step;  // k * step, not a running sum: no drift
    ticks.push_back(std::abs(tick) < step * 1e-9 ? 0.0 : tick);
  }
  return ticks;
}

Canvas draw_line_plot(const LinePlot& plot) {
  // The data's range over all series.
  const double infinity = std::numeric_limits<double>::infinity();
  double x_low = infinity, x_high = -infinity, y_low = infinity, y_high = -infinity;
  for (const Series& s : plot.series) {
    if (s.x.size() != s.y.size()) {
      throw Error("io::svg::draw_line_plot: series '" + s.name + "' has " + std::to_string(s.x.size()) +
                  " x values but " + std::to_string(s.y.size()) + " y values");
    }
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
        throw Error("io::svg::draw_line_plot: series '" + s.name + "' has a non-finite point at index " +
                    std::to_string(i));
      }
      x_low = std::min(x_low, s.x[i]);
      x_high = std::max(x_high, s.x[i]);
      y_low = std::min(y_low, s.y[i]);
      y_high = std::max(y_high, s.y[i]);
    }
  }
  if (x_low > x_high) throw Error("io::svg::draw_line_plot: the plot has no points");

  // The axes run from the first tick to the last, which cover the data.
  const std::vector<double> x_ticks = nice_ticks(x_low, x_high, 6);
  const std::vector<double> y_ticks = nice_ticks(y_low, y_high, 5);
  const double x_min = x_ticks.front(), x_max = x_ticks.back();
  const double y_min = y_ticks.front(), y_max = y_ticks.back();

  // The legend sits right of the plot area, so it never hides a curve. Its
  // width is a guess from the longest name (about 7 pixels per character at
  // font size 12), since the writer cannot measure text.
  size_t longest_name = 0, named = 0;
  for (const Series& s : plot.series) {
    longest_name = std::max(longest_name, s.name.size());
    if (!s.name.empty()) ++named;
  }
  const double legend_width = named > 0 ? 40.0 + 7.0 * static_cast<double>(longest_name) : 0.0;

  // The plot area inside the margins (room for the title, numbers, labels and legend).
  const double left = 80.0, top = 40.0, bottom = plot.height - 55.0;
  const double right = plot.width - 20.0 - (named > 0 ? legend_width + 10.0 : 0.0);
  if (right <= left || bottom <= top) throw Error("io::svg::draw_line_plot: the plot is too small");
  // Data coordinates -> pixels. y is flipped: larger values are higher up.
  auto to_pixel_x = [&](double x) { return left + (x - x_min) / (x_max - x_min) * (right - left); };
  auto to_pixel_y = [&](double y) { return bottom - (y - y_min) / (y_max - y_min) * (bottom - top); };

  Canvas canvas(plot.width, plot.height);
  const std::string grid = "#e0e0e0", ink = "#333333";

  // Grid lines and tick numbers, then the frame on top of them.
  for (double x : x_ticks) {
    const double px = to_pixel_x(x);
    canvas.line(px, top, px, bottom, grid);
    canvas.line(px, bottom, px, bottom + 5.0, ink);
    canvas.text(px, bottom + 18.0, tick_label(x), 11.0, Anchor::Middle, ink);
  }
  for (double y : y_ticks) {
    const double py = to_pixel_y(y);
    canvas.line(left, py, right, py, grid);
    canvas.line(left - 5.0, py, left, py, ink);
    canvas.text(left - 8.0, py + 4.0, tick_label(y), 11.0, Anchor::End, ink);
  }
  canvas.rect(left, top, right - left, bottom - top, "none", ink);

  // Titles: the plot's above, x's below, y's turned to read upwards.
  canvas.text((left + right) / 2.0, 24.0, plot.title, 15.0, Anchor::Middle, ink);
  canvas.text((left + right) / 2.0, plot.height - 14.0, plot.x_label, 12.0, Anchor::Middle, ink);
  canvas.text(18.0, (top + bottom) / 2.0, plot.y_label, 12.0, Anchor::Middle, ink, -90.0);

  // The curves.
  for (size_t i = 0; i < plot.series.size(); ++i) {
    const Series& s = plot.series[i];
    const std::string color = s.color.empty() ? palette_color(i) : s.color;
    std::vector<Point> points;
    for (size_t k = 0; k < s.x.size(); ++k) points.push_back({to_pixel_x(s.x[k]), to_pixel_y(s.y[k])});
    canvas.polyline(points, color, 2.0);
    if (points.size() == 1) canvas.circle(points[0].x, points[0].y, 3.0, color);  // a lone point has no line
  }

  // The legend: one row per named series, beside the top of the plot area.
  if (named > 0) {
    const double row = 18.0;
    const double box_left = right + 10.0, box_top = top;
    canvas.rect(box_left, box_top, legend_width, row * static_cast<double>(named) + 8.0, "#ffffff", "#bbbbbb");
    double y = box_top + 4.0 + row / 2.0;
    for (size_t i = 0; i < plot.series.size(); ++i) {
      const Series& s = plot.series[i];
      if (s.name.empty()) continue;
      const std::string color = s.color.empty() ? palette_color(i) : s.color;
      canvas.line(box_left + 8.0, y, box_left + 28.0, y, color, 2.5);
      canvas.text(box_left + 34.0, y + 4.0, s.name, 12.0, Anchor::Start, ink);
      y += row;
    }
  }
  return canvas;
}

// --- heatmap (chapter 9) ---

Canvas draw_heatmap(const Heatmap& h) {
  if (h.rows < 1 || h.cols < 1 || static_cast<int64_t>(h.values.size()) != h.rows * h.cols ||
      static_cast<int64_t>(h.row_labels.size()) != h.rows || static_cast<int64_t>(h.col_labels.size()) != h.cols) {
    throw Error("io::svg::draw_heatmap: " + std::to_string(h.values.size()) + " values, " +
                std::to_string(h.row_labels.size()) + " row labels and " + std::to_string(h.col_labels.size()) +
                " column labels for a " + std::to_string(h.rows) + " x " + std::to_string(h.cols) + " heatmap");
  }
  const double font = std::min(11.0, h.cell * 0.75), char_width = 0.62 * font;
  size_t longest_row = 0, longest_col = 0;
  for (const std::string& s : h.row_labels) longest_row = std::max(longest_row, s.size());
  for (const std::string& s : h.col_labels) longest_col = std::max(longest_col, s.size());
  const double title_height = h.title.empty() ? 0.0 : 18.0;
  const double left = 6.0 + char_width * static_cast<double>(longest_row) + 4.0;
  const double top = title_height + char_width * static_cast<double>(longest_col) + 6.0;
  const double width = left + h.cell * static_cast<double>(h.cols) + 6.0;
  const double height = top + h.cell * static_cast<double>(h.rows) + 6.0;
  Canvas canvas(std::max(width, char_width * static_cast<double>(h.title.size()) + 12.0), height, "none");
  if (!h.title.empty()) canvas.text(6.0, 13.0, h.title, 12.0, Anchor::Start, "#222222");
  const double scale = h.max_value > 0.0 ? h.max_value : 1.0;
  for (int64_t r = 0; r < h.rows; ++r) {
    const double y = top + h.cell * static_cast<double>(r);
    canvas.text(left - 4.0, y + h.cell * 0.5 + font * 0.35, h.row_labels[static_cast<size_t>(r)], font, Anchor::End,
                "#222222");
    for (int64_t c = 0; c < h.cols; ++c) {
      const std::string fill = blend("#ffffff", h.color, h.values[static_cast<size_t>(r * h.cols + c)] / scale);
      // White cells are left out (the page shows through): a smaller file.
      if (fill != "#ffffff") canvas.rect(left + h.cell * static_cast<double>(c), y, h.cell, h.cell, fill);
    }
  }
  for (int64_t c = 0; c < h.cols; ++c) {
    // Upwards from just above the grid, centred on the column.
    const double x = left + h.cell * (static_cast<double>(c) + 0.5) + font * 0.35;
    canvas.text(x, top - 4.0, h.col_labels[static_cast<size_t>(c)], font, Anchor::Start, "#222222", -90.0);
  }
  canvas.rect(left, top, h.cell * static_cast<double>(h.cols), h.cell * static_cast<double>(h.rows), "none",
              "#888888", 0.5);
  return canvas;
}

}  // namespace attend::io::svg
