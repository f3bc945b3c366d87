// src/resource_tracker.hpp — the client side of the resource tracker (design and
// hazards: resource_tracker.cpp).
//
// Every call is thread-safe and fork-safe. Named shared memory is the only kind of
// resource tracked; mp's anonymous mappings (memfd) need no tracking.
#pragma once

#include <sys/types.h>

#include <string>

namespace mp::detail::resource_tracker {

/// Declares that this program creates tracked resources, so that the tracker is
/// started before this process's first child (shared_memory.cpp calls it from a static
/// initializer: a program that never links SharedMemory never starts a tracker).
void want() noexcept;

/// Process::start, before any child is launched: if tracking is wanted and this
/// process has no tracker, start one, so that every process of the tree holds it from
/// its birth. Never throws: a failure is retried by the next register_segment().
void before_child() noexcept;

/// The descriptor a spawn or forkserver child must receive (make_child_payload), or
/// -1 if this process has no tracker.
int fd() noexcept;

/// In a spawn or forkserver child (run_child_payload): `fd`, received with the
/// payload, is this process's connection to its tree's tracker. Takes ownership.
void adopt(int fd) noexcept;

/// Registers the shared memory segment `name` (no leading '/') that this process just
/// created; starts the tracker if this process has none. Throws mp::ProcessError or
/// mp::OSError if no tracker can be started.
void register_segment(const std::string& name);

/// The segment `name` is about to be unlinked: the tracker forgets it. Never throws,
/// never starts a tracker (a process without one has nothing registered).
void unregister_segment(const std::string& name) noexcept;

/// The tracker's pid when this process started it (or is a fork child of the one
/// that did), 0 otherwise. For tests and diagnostics.
pid_t pid() noexcept;

}  // namespace mp::detail::resource_tracker
