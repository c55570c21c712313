// A small persistent thread pool for the decode step: one job per call, run
// by n threads (the caller is thread 0), workers sleeping in between; and
// the per-call choice between one thread and all of them. Not a task queue,
// not used by the kernels' own OpenMP regions.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace pyllm {

class ThreadPool {
public:
    ThreadPool() = default;
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;
    // Wakes every worker with the stop flag and joins them.
    ~ThreadPool();

    // Calls job(tid, n) for tid = 0..n-1 on n threads, the caller being tid 0,
    // and returns when all have returned. Starts workers the first time n grows.
    // One caller at a time; a job must not throw.
    void run(int n, const std::function<void(int, int)>& job);

private:
    void worker(int tid);

    std::vector<std::thread> threads_;  // tids 1..size()
    std::mutex mu_;
    std::condition_variable wake_, done_;
    const std::function<void(int, int)>* job_ = nullptr;
    int job_n_ = 0;
    int pending_ = 0;        // workers still in the current job
    uint64_t epoch_ = 0;     // bumped for every job
    bool stop_ = false;
};

// Picks the thread count for one kind of call (a decode step, a prefill
// chunk) from what the calls cost lately: all `max` threads, or one thread
// when the others do not pay (a machine whose other cores are busy, where a
// step waits for descheduled threads). Each count keeps an exponential
// average of seconds per unit of work; the cheaper one runs, and the other
// is tried again after `interval` calls, an interval that doubles each time
// the try loses (up to kMaxInterval) and starts over when it wins or when
// the chosen count suddenly costs twice its average (the machine changed). Results
// never depend on the choice: every kernel gives the same bits on any
// number of threads. Not thread-safe: one per model, used under its lock.
class ThreadChooser {
public:
    int pick(int max);
    void record(int n, double seconds, double units);

private:
    static constexpr int64_t kFirstInterval = 8, kMaxInterval = 64;
    double cost_[2] = {0.0, 0.0};  // seconds per unit: [0] one thread, [1] all; 0 until measured
    int64_t calls_ = 0, next_try_ = kFirstInterval, interval_ = kFirstInterval;
    int trying_ = -1;  // the slot being tried this call, or -1
};

}  // namespace pyllm
