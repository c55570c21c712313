// The decode step's thread pool: workers block on a condition variable between
// jobs (no spinning while Python runs between tokens). Not a general executor.
#include "threadpool.h"

#include <algorithm>

#include "dispatch.h"

namespace pyllm {

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    wake_.notify_all();
    for (std::thread& t : threads_) t.join();
}

void ThreadPool::run(int n, const std::function<void(int, int)>& job) {
    if (n <= 1) {
        job(0, 1);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        while (int(threads_.size()) < n - 1) {
            const int tid = int(threads_.size()) + 1;
            threads_.emplace_back([this, tid] { worker(tid); });
        }
        job_ = &job;
        job_n_ = n;
        pending_ = n - 1;
        epoch_++;
    }
    wake_.notify_all();
    job(0, n);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
}

void ThreadPool::worker(int tid) {
    uint64_t seen = 0;
    {
        std::lock_guard<std::mutex> lock(mu_);
        seen = epoch_;  // a worker started for a job joins it below
        if (job_ && tid < job_n_) seen = epoch_ - 1;
    }
    for (;;) {
        const std::function<void(int, int)>* job;
        int n;
        {
            std::unique_lock<std::mutex> lock(mu_);
            wake_.wait(lock, [&] { return stop_ || epoch_ != seen; });
            if (stop_) return;
            seen = epoch_;
            job = job_;
            n = job_n_;
            if (tid >= n) continue;  // this job needs fewer threads
        }
        (*job)(tid, n);
        {
            std::lock_guard<std::mutex> lock(mu_);
            if (--pending_ == 0) done_.notify_one();
        }
    }
}

int ThreadChooser::pick(int max) {
    if (max <= 1) return 1;
    if (!adaptive_threads()) return max;
    calls_++;
    const int best = cost_[0] > 0.0 && (cost_[1] <= 0.0 || cost_[0] < cost_[1]) ? 0 : 1;
    trying_ = -1;
    if (calls_ >= next_try_) {
        trying_ = 1 - best;
        return trying_ == 0 ? 1 : max;
    }
    return best == 0 ? 1 : max;
}

void ThreadChooser::record(int n, double seconds, double units) {
    if (units <= 0.0 || seconds < 0.0) return;
    const int slot = n <= 1 ? 0 : 1;
    const double c = seconds / units;
    if (trying_ == slot) {
        // a try: it wins if it beat the other's average; either way the try's
        // figure replaces the stale one, and the next try is scheduled
        const double other = cost_[1 - slot];
        const bool won = other <= 0.0 || c < other;
        interval_ = won ? kFirstInterval : std::min(kMaxInterval, interval_ * 2);
        next_try_ = calls_ + interval_;
        cost_[slot] = c;
        trying_ = -1;
        return;
    }
    if (cost_[slot] > 0.0 && c > 2.0 * cost_[slot]) {  // try the other count soon
        interval_ = kFirstInterval;
        next_try_ = std::min(next_try_, calls_ + 2);
    }
    cost_[slot] = cost_[slot] <= 0.0 ? c : 0.75 * cost_[slot] + 0.25 * c;
}

}  // namespace pyllm
