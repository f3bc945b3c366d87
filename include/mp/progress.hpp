// mp/progress.hpp — a progress bar over any range, drawn on stderr when it is a terminal.
//
// @code
//   for (int r : mp::progress(pool.imap(work, items))) use(r);     // imap knows its size
//   for (auto& x : mp::progress(v, "loading")) ...                   // any sized range
//   for (auto& x : mp::progress(gen, {.total = 1000})) ...           // or say how many
// @endcode
//
//   loading [##########..........]  512/1000  51%  3.2 s
//
// When stderr is not a terminal (a pipe, a file, CI) nothing is drawn: the wrapper only
// forwards the elements. Redraws at most every 100 ms and once at the end. The wrapped
// range is iterated once, by reference (a temporary is kept alive by the wrapper).
// Not thread-safe: iterate it from one thread (what it counts may run anywhere).
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <iterator>
#include <optional>
#include <ranges>
#include <string>
#include <type_traits>
#include <utility>

namespace mp {

struct ProgressOptions {
  std::optional<std::size_t> total{};  ///< unset: the range's size(), if it has one
  std::string label{};
  int width = 30;                      ///< characters of the bar
};

namespace detail {

class ProgressBar {
 public:
  ProgressBar(std::optional<std::size_t> total, std::string label, int width)
      : total_(total), label_(std::move(label)), width_(width), tty_(::isatty(STDERR_FILENO) == 1),
        start_(std::chrono::steady_clock::now()) {}
  ProgressBar(const ProgressBar&) = delete;
  ProgressBar& operator=(const ProgressBar&) = delete;
  ~ProgressBar() { finish(); }

  void step() {
    ++done_;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_ >= std::chrono::milliseconds(100)) {
      last_ = now;
      draw();
    }
  }
  void finish() {
    if (finished_) return;
    finished_ = true;
    draw();
    if (tty_) std::fputc('\n', stderr);
  }
  bool drawing() const noexcept { return tty_; }

 private:
  void draw() const {
    if (!tty_) return;
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string line = "\r";
    if (!label_.empty()) line += label_ + " ";
    char buf[96];
    if (total_ && *total_ > 0) {
      const double f = std::min(1.0, static_cast<double>(done_) / static_cast<double>(*total_));
      const int fill = static_cast<int>(f * width_);
      line += "[" + std::string(static_cast<std::size_t>(fill), '#') + std::string(static_cast<std::size_t>(width_ - fill), '.') + "]";
      std::snprintf(buf, sizeof buf, " %zu/%zu %3d%% %.1f s", done_, *total_, static_cast<int>(f * 100), secs);
    } else {
      std::snprintf(buf, sizeof buf, "%zu done %.1f s", done_, secs);
    }
    line += buf;
    std::fputs(line.c_str(), stderr);
    std::fflush(stderr);
  }

  std::optional<std::size_t> total_;
  std::string label_;
  int width_;
  bool tty_;
  std::size_t done_ = 0;
  bool finished_ = false;
  std::chrono::steady_clock::time_point start_, last_{};
};

template <class R>
std::optional<std::size_t> size_of(R& r) {
  if constexpr (requires { r.size(); }) {
    return static_cast<std::size_t>(r.size());
  } else {
    return std::nullopt;
  }
}

}  // namespace detail

/// A range that forwards `range`'s elements and draws the bar as they are taken.
template <class Range>
class Progress {
 public:
  Progress(Range&& range, ProgressOptions options)
      : range_(std::forward<Range>(range)),
        bar_(options.total ? options.total : detail::size_of(range_), std::move(options.label), options.width) {}

  class iterator {
   public:
    using base = std::ranges::iterator_t<std::remove_reference_t<Range>>;
    using value_type = std::ranges::range_value_t<std::remove_reference_t<Range>>;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    iterator(base it, Progress* owner) : it_(std::move(it)), owner_(owner) {}
    decltype(auto) operator*() const { return *it_; }
    iterator& operator++() {
      ++it_;
      owner_->bar_.step();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(const std::ranges::sentinel_t<std::remove_reference_t<Range>>& end) const {
      const bool at_end = it_ == end;
      if (at_end) owner_->bar_.finish();
      return at_end;
    }

   private:
    base it_{};
    Progress* owner_ = nullptr;
  };

  iterator begin() { return iterator(std::ranges::begin(range_), this); }
  auto end() { return std::ranges::end(range_); }

 private:
  Range range_;  // a reference for lvalues, the object itself for temporaries
  detail::ProgressBar bar_;
};

template <class Range>
Progress<Range> progress(Range&& range, ProgressOptions options = {}) {
  return Progress<Range>(std::forward<Range>(range), std::move(options));
}
template <class Range>
Progress<Range> progress(Range&& range, std::string label) {
  return Progress<Range>(std::forward<Range>(range), ProgressOptions{.label = std::move(label)});
}

}  // namespace mp
