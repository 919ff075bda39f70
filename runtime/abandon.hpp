// What the pools' cores share: a task's cancellation, and their pending tasks
// when the event loop is destroyed (private to the runtime).
#pragma once

#include <exception>
#include <memory>

#include "corun/awaitable.hpp"

namespace corun::detail {

/// A pool core holding tasks: when the event loop is destroyed with tasks
/// still pending (a coroutine awaiting one is never resumed), their handlers
/// must be destroyed like every other pending handler, so that the
/// coroutines' frames, and the pools they own, are destroyed too: the pools
/// hold their tasks, so nothing else would ever free them.
class abandonable {
public:
    virtual ~abandonable() = default;
    /// Destroys every pending task's handler without calling it.
    virtual void abandon_tasks() = 0;
};

/// The error of a task cancelled, or failed by `terminate`: operation_aborted.
CORUN_API std::exception_ptr task_cancelled();

/// Has `core` abandon its tasks when the event loop of `ex` is destroyed.
CORUN_API void abandon_with_loop(const executor& ex, std::weak_ptr<abandonable> core);

}  // namespace corun::detail
