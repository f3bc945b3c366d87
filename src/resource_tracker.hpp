// src/resource_tracker.hpp — the client side of the resource tracker (design and
// hazards: resource_tracker.cpp).
//
// Every call is thread-safe and fork-safe. Named shared memory is the only kind of
// resource tracked; mp's anonymous mappings (memfd) need no tracking.
#pragma once

#include <sys/types.h>

#include <string>

namespace mp::detail::resource_tracker {

/// Declares that this program creates tracked resources, so that each process links
/// its children to its tree's tracker (shared_memory.cpp calls it from a static
/// initializer: a program that never links SharedMemory never makes a link).
void want() noexcept;

/// Process::start, before any child is launched: if tracking is wanted and this
/// process has no link to a tree's tracker, make one (a socket pair and a shared page:
/// a few system calls, no process), so that every process of the tree holds it from
/// its birth. The tracker itself starts at the tree's first tracked creation, in
/// whichever process that happens. Never throws: a child born unlinked makes its own
/// link at its first register_segment().
void before_child() noexcept;

/// The descriptors of this process's link (-1 where absent): what a spawn or
/// forkserver child must receive (make_child_payload).
struct Link {
  int tree = -1;   // the tree's end of the socket
  int spare = -1;  // the tracker's end, while no tracker has been seen running
  int state = -1;  // the shared page (who starts the tracker, its pid)
};
Link link() noexcept;

/// The tree's end of the socket, or -1 if this process has no link.
int fd() noexcept;

/// In a spawn or forkserver child (run_child_payload): the link received with the
/// payload becomes this process's. Takes ownership of the descriptors.
void adopt(const Link& link) noexcept;

/// Registers the shared memory segment `name` (no leading '/') that this process just
/// created; starts the tree's tracker if none runs yet (or waits for the process of the
/// tree that is starting it). Throws mp::ProcessError or
/// mp::OSError if no tracker can be started.
void register_segment(const std::string& name);

/// The segment `name` is about to be unlinked: the tracker forgets it. Never throws,
/// never starts a tracker (a process without one has nothing registered).
void unregister_segment(const std::string& name) noexcept;

/// For tests: claims the start of the tree's tracker for this process without starting
/// one — what a process killed in the middle of the start leaves behind. Makes a link
/// if this process has none. Returns false if somebody had claimed it already.
bool claim_start_for_test();

/// The tree's tracker's pid, 0 while none runs (no tracked creation yet). For tests
/// and diagnostics; never starts one.
pid_t pid() noexcept;

}  // namespace mp::detail::resource_tracker
