// corun — the whole public API in one include.
#pragma once

#include "corun/as_completed.hpp"
#include "corun/awaitable.hpp"
#include "corun/gather.hpp"
#include "corun/http/client.hpp"
#include "corun/pipeline.hpp"
#include "corun/process_pool.hpp"
#include "corun/range.hpp"
#include "corun/remote_exception.hpp"
#include "corun/run.hpp"
#include "corun/semaphore.hpp"
#include "corun/settled.hpp"
#include "corun/thread_pool.hpp"
#include "corun/timeout.hpp"
