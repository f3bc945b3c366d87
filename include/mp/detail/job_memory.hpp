// mp/detail/job_memory.hpp — where the parent-side bookkeeping of submitted work lives:
// the AsyncState / FutureState of each apply_async or submit, and the nodes of the
// pool's table of pending jobs.
//
// Why not the heap: these are small objects made at 1e5-1e6 per second that live from
// submit to result, so a burst of submissions grows the heap by tens of MiB, and every
// fresh 4 KiB page costs a page fault at its first touch (12-20 us on a VM: measured,
// it was half the time of a 100,000-task apply_async). Here they come from chunks of
// memory mapped ahead in one call — with transparent huge pages once the chunks reach
// 2 MiB, one fault per 2 MiB — and blocks freed go back to per-size free lists
// (std::pmr::unsynchronized_pool_resource) for the next submissions. The memory is
// never handed back to the system: it stays at the peak of outstanding work, as the
// free lists of the heap would.
//
// Thread-safe (one mutex, held across fork so that a child finds it free) and valid for
// the whole life of the process (the resource is never destroyed: a result may outlive
// its pool). Under AddressSanitizer it is the plain heap, so that ASan keeps watching
// every block.
#pragma once

#include <memory>
#include <memory_resource>
#include <utility>

namespace mp::detail {

/// The process's job memory (above).
std::pmr::memory_resource* job_memory() noexcept;

/// std::make_shared for job bookkeeping: the object and its control block in one block
/// of job_memory().
template <class T, class... A>
std::shared_ptr<T> make_job_shared(A&&... args) {
  return std::allocate_shared<T>(std::pmr::polymorphic_allocator<T>(job_memory()), std::forward<A>(args)...);
}

}  // namespace mp::detail
