// src/futures.cpp — ProcessPoolExecutor's out-of-line members (futures.hpp).
#include "mp/futures.hpp"

namespace mp {

ProcessPoolExecutor::ProcessPoolExecutor(ProcessPoolExecutorOptions options)
    : core_(std::make_shared<detail::PoolCore>(detail::PoolConfig{
          .processes = options.max_workers,
          .initializer = options.initializer.target(),
          .maxtasksperchild = options.max_tasks_per_child,
          .start_method =
              options.mp_context ? std::optional<StartMethod>(options.mp_context->start_method()) : std::nullopt,
          .task_timeout = options.task_timeout,
          .max_memory_per_child = options.max_memory_per_child,
          .death_error = detail::DeathError::broken_process_pool,
          .what = "ProcessPoolExecutor",
          .cancellable = true,
          .on_progress = {}})) {}

ProcessPoolExecutor::~ProcessPoolExecutor() {
  if (!core_) return;
  try {
    shutdown(true);
  } catch (...) {
  }
}

void ProcessPoolExecutor::shutdown(bool wait, bool cancel_futures) {
  if (cancel_futures) {
    std::vector<std::function<void()>> all;
    {
      std::lock_guard g(*track_mu_);
      for (auto& c : cancellers_) all.push_back(c.second);
    }
    for (auto& c : all) c();
  }
  core().close();
  if (wait) core().join();
}

}  // namespace mp
