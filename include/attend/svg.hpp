// A small SVG writer: shapes and text on a canvas, plus a line plot with axes
// and a legend, written as a string or a file any web browser can open.
// Chapter 4 introduces it (docs/04-modules-and-optimizers.md); chapter 8 draws
// loss curves with it and chapter 9 attention heatmaps.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace attend::io::svg {

// Coordinates are in pixels: x grows to the right, y grows DOWN from the
// top-left corner (as on a screen, unlike a math plot).
struct Point {
  double x = 0.0;
  double y = 0.0;
};

// Colors are "#rrggbb" strings, e.g. "#1f77b4". "none" means "do not paint".

// The color a fraction t of the way from `from` to `to` (t is clamped to
// [0, 1]): blend("#ffffff", "#ff0000", 0.5) == "#ff8080". For heatmaps.
std::string blend(const std::string& from, const std::string& to, double t);

// A fixed list of distinct colors, reused cyclically: series 0, 1, 2, ...
std::string palette_color(size_t index);

// Replaces the five characters XML gives a meaning (& < > " ') with entities,
// so any text can be put inside an element or an attribute.
std::string escape_xml(const std::string& text);

// How text is placed relative to its (x, y): y is the text's baseline.
enum class Anchor { Start, Middle, End };

// A drawing: each call appends one element, later ones are painted on top.
class Canvas {
 public:
  // A white (or `background`) canvas of width x height pixels.
  Canvas(double width, double height, const std::string& background = "#ffffff");

  double width() const { return width_; }
  double height() const { return height_; }

  // A rectangle with its top-left corner at (x, y).
  void rect(double x, double y, double width, double height, const std::string& fill,
            const std::string& stroke = "none", double stroke_width = 1.0);
  void circle(double center_x, double center_y, double radius, const std::string& fill,
              const std::string& stroke = "none", double stroke_width = 1.0);
  void line(double x1, double y1, double x2, double y2, const std::string& stroke,
            double stroke_width = 1.0, bool dashed = false);
  // Straight segments through the points, not filled.
  void polyline(const std::vector<Point>& points, const std::string& stroke,
                double stroke_width = 1.5);
  // `content` is escaped here; rotate_degrees turns it around (x, y)
  // (-90 writes bottom-to-top, as for a y-axis label).
  void text(double x, double y, const std::string& content, double font_size = 12.0,
            Anchor anchor = Anchor::Start, const std::string& fill = "#000000",
            double rotate_degrees = 0.0);

  // Elements between begin_group and end_group share an SVG transform, e.g.
  // "translate(40, 20)" or "scale(2)". Groups may nest.
  void begin_group(const std::string& transform);
  void end_group();

  // Paints another canvas (its background and elements) with its top-left
  // corner at (x, y): to put several plots on one page.
  void draw_canvas(const Canvas& other, double x, double y);

  // The whole document. Throws attend::Error if a group is left open.
  std::string to_string() const;
  // Writes to_string() to `path`; throws attend::Error naming the file on failure.
  void save(const std::string& path) const;

 private:
  double width_, height_;
  std::string body_;      // the elements written so far, one per line
  int open_groups_ = 0;
};

// One named curve of a line plot: y[i] is plotted against x[i].
struct Series {
  std::string name;      // shown in the legend; an empty name is left out of it
  std::vector<double> x;
  std::vector<double> y;
  std::string color;     // empty: palette_color(index of the series)
};

// A line plot: axes with tick marks and numbers, a title, axis labels and,
// when some series has a name, a legend to the right of the axes (so it never
// hides a curve). The axis ranges cover every point of every series.
struct LinePlot {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<Series> series;
  double width = 640.0;
  double height = 400.0;
};

// Draws the plot on a new canvas. Throws attend::Error when there are no
// points or a series' x and y differ in length.
Canvas draw_line_plot(const LinePlot& plot);

// "Nice" tick positions covering [low, high]: about `count` multiples of
// 1, 2 or 5 times a power of ten (0, 0.2, 0.4, ... rather than 0, 0.17, ...).
std::vector<double> nice_ticks(double low, double high, int count = 5);

// A matrix as a grid of shaded cells, labelled along the left (rows) and
// along the top (columns, written upwards). For attention maps (chapter 9).
struct Heatmap {
  std::string title;
  int64_t rows = 0, cols = 0;
  std::vector<double> values;  // rows * cols, row-major
  std::vector<std::string> row_labels, col_labels;
  double max_value = 1.0;      // painted in full `color`; 0 and below are white
  double cell = 16.0;          // cell size in pixels
  std::string color = "#08306b";
};

// Draws the heatmap on a new transparent canvas just big enough for it (white
// cells are not drawn: put it on a white page).
// Throws attend::Error when values or labels do not match rows and cols.
Canvas draw_heatmap(const Heatmap& heatmap);

}  // namespace attend::io::svg
