// A small persistent thread pool for the decode step: one job per call, run
// by n threads (the caller is thread 0), workers sleeping in between. Not a
// task queue, not used by the kernels' own OpenMP regions.
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

}  // namespace pyllm
