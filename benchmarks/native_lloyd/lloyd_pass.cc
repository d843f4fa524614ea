// One fused k-means Lloyd pass as an XLA FFI custom call (CPU), float32.
//
// A measurement probe for benchmarks/native_lloyd/probe.py; it is not used by jaxprob.
//
// Inputs:  x (N, D) f32, w (N,) f32, c (K, D) f32.
// Attributes: n_threads (i64, 0 = one per hardware thread), use_xla_pool (i64: 1 = run the chunks on XLA's
//          intra-op thread pool, 0 = on std::threads started for the call).
// Outputs: labels (N,) s32  -- index of the closest centroid (squared Euclidean), lowest index among exact ties,
//          sums (K, D) f32  -- sum of w_i x_i per label,
//          counts (K,) f32  -- sum of w_i per label,
//          inertia () f32   -- sum of w_i * min distance.
//
// The rows are split into contiguous chunks, one per thread (on XLA's intra-op pool or on std::threads), each
// with private partial sums that are combined at the end. Inside a chunk the rows go in blocks of kRowBlock;
// the scores ||c||^2 - 2 x.c are computed in registers and folded into a running minimum, so the N x K distance
// matrix never exists in memory. The centroids are transposed and scaled to (D, Kp) = -2 c^T, Kp = K rounded up
// to a multiple of 16 (padding centroids score +inf). Two assignment kernels:
//   D > kMaxSmallD: centroids along the 16 vector lanes; a micro-kernel scores kRows rows against a tile of
//     kTile centroids, keeping per-lane minima, reduced across the lanes once per row;
//   D <= kMaxSmallD: rows along the lanes (16 rows transposed to (D, 16)), one centroid at a time, no
//     horizontal reduction; the loops over D are unrolled (D known at compile time).
// Then, per block: inertia += w * max(score + ||x||^2, 0), and the weighted sums and counts per label, summed in
// float32 over at most kFlushRows rows, then added to float64 totals (converted to float32 at the end).
// Vectorisation: GCC/Clang vector extensions (16 floats: one AVX-512 register, or two AVX2 ones), no intrinsics.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int kLanes = 16;       // lanes of the running minimum (centroid index mod 16)
constexpr int kTile = 64;        // centroids per micro-kernel tile
constexpr int kRows = 4;         // rows per micro-kernel call
constexpr int kRowBlock = 128;   // rows kept in flight while a centroid tile is hot in L1
constexpr int64_t kFlushRows = 1024;    // rows summed in float32 before adding to the float64 totals
constexpr int64_t kMinRowsPerThread = 32768;
constexpr int64_t kMaxSmallD = 8;        // D up to this: rows, not centroids, along the vector lanes

struct Centroids {
  int64_t k, kp, d;
  std::vector<float> ct;   // (d, kp): -2 c^T, zero in the padding
  std::vector<float> csq;  // (kp,): ||c||^2, +inf in the padding
};

// 16-float / 16-int vectors (GCC/Clang vector extensions: one AVX-512 register, or two AVX2 ones elsewhere).
typedef float VF __attribute__((vector_size(64)));
typedef int32_t VI __attribute__((vector_size(64)));
typedef float VFu __attribute__((vector_size(64), aligned(4)));  // unaligned load / store

// Butterfly reductions over the 16 lanes: every lane ends up holding the result.
#define LLOYD_XOR_LANES(m)                                                                                  \
  0 ^ (m), 1 ^ (m), 2 ^ (m), 3 ^ (m), 4 ^ (m), 5 ^ (m), 6 ^ (m), 7 ^ (m), 8 ^ (m), 9 ^ (m), 10 ^ (m), 11 ^ (m), \
      12 ^ (m), 13 ^ (m), 14 ^ (m), 15 ^ (m)

template <typename V>
inline V AllMin(V v) {
  V t = __builtin_shufflevector(v, v, LLOYD_XOR_LANES(8));
  v = v < t ? v : t;
  t = __builtin_shufflevector(v, v, LLOYD_XOR_LANES(4));
  v = v < t ? v : t;
  t = __builtin_shufflevector(v, v, LLOYD_XOR_LANES(2));
  v = v < t ? v : t;
  t = __builtin_shufflevector(v, v, LLOYD_XOR_LANES(1));
  return v < t ? v : t;
}

inline float SumLanes(VF v) {
  v += __builtin_shufflevector(v, v, LLOYD_XOR_LANES(8));
  v += __builtin_shufflevector(v, v, LLOYD_XOR_LANES(4));
  v += __builtin_shufflevector(v, v, LLOYD_XOR_LANES(2));
  v += __builtin_shufflevector(v, v, LLOYD_XOR_LANES(1));
  return v[0];
}

// ||x||^2 of one row: 16 columns at a time, then the remaining ones.
template <int DC>
inline float SquaredNorm(const float* x, int64_t d_any) {
  const int64_t d = DC > 0 ? DC : d_any;
  float s = 0.0f;
  int64_t j = 0;
  if (d >= kLanes) {
    VF acc{};
    for (; j + kLanes <= d; j += kLanes) {
      const VF v = *reinterpret_cast<const VFu*>(x + j);
      acc += v * v;
    }
    s = SumLanes(acc);
  }
  for (; j < d; ++j) s += x[j] * x[j];
  return s;
}

// Scores of R rows against the KT centroids [k0, k0 + KT), folded into the running minimum of every lane:
// lane j of row r holds the lowest score (and its index) among the centroids seen so far with index = j mod 16.
// Centroids are visited in increasing index order and a lane is replaced only on a strictly lower score, so
// every lane keeps the lowest index among its exact ties. The R x KT scores stay in registers.
template <int R, int KT>
inline void Tile(const float* __restrict x, int64_t d, const Centroids& c, int64_t k0, VF* __restrict lv,
                 VI* __restrict li) {
  constexpr int G = KT / kLanes;
  VF acc[R][G];
  const float* csq = c.csq.data() + k0;
  for (int g = 0; g < G; ++g) {
    const VF s = *reinterpret_cast<const VFu*>(csq + g * kLanes);
    for (int r = 0; r < R; ++r) acc[r][g] = s;
  }
  const float* ct = c.ct.data() + k0;
  const int64_t kp = c.kp;
  for (int64_t j = 0; j < d; ++j) {
    VF cv[G];
    for (int g = 0; g < G; ++g) cv[g] = *reinterpret_cast<const VFu*>(ct + j * kp + g * kLanes);
    for (int r = 0; r < R; ++r) {
      const float xv = x[r * d + j];
      for (int g = 0; g < G; ++g) acc[r][g] += xv * cv[g];
    }
  }
  VI idx;
  for (int l = 0; l < kLanes; ++l) idx[l] = static_cast<int32_t>(k0 + l);
  for (int g = 0; g < G; ++g) {
    for (int r = 0; r < R; ++r) {
      const VI lt = acc[r][g] < lv[r];
      lv[r] = lt ? acc[r][g] : lv[r];
      li[r] = lt ? idx : li[r];
    }
    idx += kLanes;
  }
}

template <int R>
inline void TileAnyWidth(int width, const float* x, int64_t d, const Centroids& c, int64_t k0, VF* lv, VI* li) {
  switch (width) {
    case 64: Tile<R, 64>(x, d, c, k0, lv, li); break;
    case 48: Tile<R, 48>(x, d, c, k0, lv, li); break;
    case 32: Tile<R, 32>(x, d, c, k0, lv, li); break;
    default: Tile<R, 16>(x, d, c, k0, lv, li); break;
  }
}

// Small D: 16 rows per vector (the block transposed to (D, 16) per group of rows), centroids visited one at a
// time in increasing index order, a row's minimum replaced only on a strictly lower score (lowest index among
// exact ties). No horizontal reductions, and K need not be padded.
template <int DC>
void AssignSmallD(const float* __restrict xb, int64_t nb, const Centroids& c, int32_t* __restrict lb,
                  float* __restrict best) {
  const int64_t d = DC > 0 ? DC : c.d, kp = c.kp;
  const float inf = std::numeric_limits<float>::infinity();
  for (int64_t r0 = 0; r0 < nb; r0 += kLanes) {
    const int64_t m = std::min<int64_t>(kLanes, nb - r0);
    VF xt[kMaxSmallD];
    for (int64_t j = 0; j < d; ++j) xt[j] = VF{};
    for (int64_t l = 0; l < m; ++l)
      for (int64_t j = 0; j < d; ++j) xt[j][l] = xb[(r0 + l) * d + j];
    VF bv = VF{} + inf;
    VI bi = VI{};
    for (int64_t kk = 0; kk < c.k; ++kk) {
      VF s = VF{} + c.csq[kk];
      for (int64_t j = 0; j < d; ++j) s += xt[j] * c.ct[j * kp + kk];
      const VI lt = s < bv;
      bv = lt ? s : bv;
      bi = lt ? VI{} + static_cast<int32_t>(kk) : bi;
    }
    for (int64_t l = 0; l < m; ++l) {
      lb[r0 + l] = bi[l];
      best[r0 + l] = bv[l];
    }
  }
}

struct Partial {
  std::vector<double> sums, counts;
  double inertia = 0.0;
};

// DC > 0: D known at compile time (the loops over the columns unrolled); DC = 0: any D.
template <int DC>
void RunRange(const float* x, const float* w, const Centroids& c, int64_t begin, int64_t end, int32_t* labels,
              Partial* out) {
  const int64_t d = DC > 0 ? DC : c.d, k = c.k;
  out->sums.assign(static_cast<size_t>(k * d), 0.0);
  out->counts.assign(static_cast<size_t>(k), 0.0);
  out->inertia = 0.0;
  // float accumulators over at most kFlushRows rows, then added to the float64 ones
  std::vector<float> fsums(static_cast<size_t>(k * d), 0.0f), fcounts(static_cast<size_t>(k), 0.0f);
  float finertia = 0.0f;
  auto flush = [&]() {
    for (int64_t i = 0; i < k * d; ++i) out->sums[i] += fsums[i];
    for (int64_t i = 0; i < k; ++i) out->counts[i] += fcounts[i];
    out->inertia += finertia;
    std::fill(fsums.begin(), fsums.end(), 0.0f);
    std::fill(fcounts.begin(), fcounts.end(), 0.0f);
    finertia = 0.0f;
  };
  std::vector<VF> lv(kRowBlock);
  std::vector<VI> li(kRowBlock);
  std::vector<float> best(kRowBlock);
  int64_t since_flush = 0;
  for (int64_t b0 = begin; b0 < end; b0 += kRowBlock) {
    const int64_t nb = std::min<int64_t>(kRowBlock, end - b0);
    const float* xb = x + b0 * d;
    const float* wb = w + b0;
    int32_t* lb = labels + b0;
    if (d <= kMaxSmallD) {
      AssignSmallD<DC>(xb, nb, c, lb, best.data());
    } else {
      const float inf = std::numeric_limits<float>::infinity();
      for (int64_t r = 0; r < nb; ++r) {
        lv[r] = VF{} + inf;
        li[r] = VI{};
      }
      for (int64_t k0 = 0; k0 < c.kp; k0 += kTile) {
        const int width = static_cast<int>(std::min<int64_t>(kTile, c.kp - k0));
        int64_t r = 0;
        for (; r + kRows <= nb; r += kRows)
          TileAnyWidth<kRows>(width, xb + r * d, d, c, k0, lv.data() + r, li.data() + r);
        for (; r < nb; ++r)
          TileAnyWidth<1>(width, xb + r * d, d, c, k0, lv.data() + r, li.data() + r);
      }
      // lowest score of every row, then the lowest centroid index among the lanes that hold it
      for (int64_t r = 0; r < nb; ++r) {
        const VF m = AllMin(lv[r]);
        const VI cand = lv[r] == m ? li[r] : VI{} + std::numeric_limits<int32_t>::max();
        lb[r] = AllMin(cand)[0];
        best[r] = m[0];
      }
    }
    for (int64_t r = 0; r < nb; ++r) finertia += wb[r] * std::max(best[r] + SquaredNorm<DC>(xb + r * d, d), 0.0f);
    for (int64_t r = 0; r < nb; ++r) {
      const float wr = wb[r];
      const float* xr = xb + r * d;
      float* __restrict s = fsums.data() + static_cast<int64_t>(lb[r]) * d;
      fcounts[lb[r]] += wr;
      for (int64_t j = 0; j < d; ++j) s[j] += wr * xr[j];
    }
    since_flush += nb;
    if (since_flush >= kFlushRows) {
      flush();
      since_flush = 0;
    }
  }
  flush();
}

void RunRangeAnyD(const float* x, const float* w, const Centroids& c, int64_t begin, int64_t end, int32_t* labels,
                  Partial* out) {
  switch (c.d) {
    case 1: RunRange<1>(x, w, c, begin, end, labels, out); break;
    case 2: RunRange<2>(x, w, c, begin, end, labels, out); break;
    case 3: RunRange<3>(x, w, c, begin, end, labels, out); break;
    case 4: RunRange<4>(x, w, c, begin, end, labels, out); break;
    case 5: RunRange<5>(x, w, c, begin, end, labels, out); break;
    case 6: RunRange<6>(x, w, c, begin, end, labels, out); break;
    case 7: RunRange<7>(x, w, c, begin, end, labels, out); break;
    case 8: RunRange<8>(x, w, c, begin, end, labels, out); break;
    default: RunRange<0>(x, w, c, begin, end, labels, out); break;
  }
}

ffi::Error LloydPassImpl(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> c,
                         ffi::ThreadPool pool, int64_t n_threads, int64_t use_xla_pool,
                         ffi::ResultBuffer<ffi::S32> labels, ffi::ResultBuffer<ffi::F32> sums,
                         ffi::ResultBuffer<ffi::F32> counts, ffi::ResultBuffer<ffi::F32> inertia) {
  const auto xd = x.dimensions();
  const auto cd = c.dimensions();
  if (xd.size() != 2 || cd.size() != 2) return ffi::Error::InvalidArgument("x and c must be 2-D");
  const int64_t n = xd[0], d = xd[1], k = cd[0];
  if (cd[1] != d) return ffi::Error::InvalidArgument("x and c must have the same number of columns");
  if (static_cast<int64_t>(w.element_count()) != n) return ffi::Error::InvalidArgument("w must have N entries");
  if (k < 1 || k > std::numeric_limits<int32_t>::max() - kTile) return ffi::Error::InvalidArgument("bad K");
  if (static_cast<int64_t>(labels->element_count()) != n ||
      static_cast<int64_t>(sums->element_count()) != k * d ||
      static_cast<int64_t>(counts->element_count()) != k || inertia->element_count() != 1)
    return ffi::Error::InvalidArgument("unexpected output shapes");

  Centroids cen;
  cen.k = k;
  cen.d = d;
  cen.kp = (k + kLanes - 1) / kLanes * kLanes;
  cen.ct.assign(static_cast<size_t>(d * cen.kp), 0.0f);
  cen.csq.assign(static_cast<size_t>(cen.kp), std::numeric_limits<float>::infinity());
  const float* cp = c.typed_data();
  for (int64_t i = 0; i < k; ++i) {
    float s = 0.0f;
    for (int64_t j = 0; j < d; ++j) {
      const float v = cp[i * d + j];
      s += v * v;
      cen.ct[j * cen.kp + i] = -2.0f * v;
    }
    cen.csq[i] = s;
  }

  int64_t nt = n_threads > 0 ? n_threads : std::max<int64_t>(1, std::thread::hardware_concurrency());
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, (n + kMinRowsPerThread - 1) / kMinRowsPerThread));
  std::vector<Partial> parts(static_cast<size_t>(nt));
  const float* xp = x.typed_data();
  const float* wp = w.typed_data();
  int32_t* lp = labels->typed_data();
  auto run_chunk = [&](int64_t t) {
    RunRangeAnyD(xp, wp, cen, n * t / nt, n * (t + 1) / nt, lp, &parts[static_cast<size_t>(t)]);
  };
  if (nt > 1 && use_xla_pool) {
    // Chunks are claimed from a shared counter by the calling thread and by nt - 1 tasks on XLA's intra-op
    // pool; the caller waits only for chunks already claimed (so running), never for a task still queued.
    // A task that starts after all chunks are claimed touches only the shared counters, kept alive by it.
    struct Shared {
      std::atomic<int64_t> next{0}, done{0};
    };
    auto shared = std::make_shared<Shared>();
    auto work = [shared, nt, run = &run_chunk]() {
      for (int64_t t; (t = shared->next.fetch_add(1)) < nt;) {
        (*run)(t);
        shared->done.fetch_add(1, std::memory_order_release);
      }
    };
    for (int64_t t = 1; t < nt; ++t) {
      auto task = work;
      pool.Schedule(std::move(task));
    }
    work();
    while (shared->done.load(std::memory_order_acquire) < nt) std::this_thread::yield();
  } else {
    std::vector<std::thread> threads;
    for (int64_t t = 1; t < nt; ++t) threads.emplace_back(run_chunk, t);
    run_chunk(0);
    for (auto& th : threads) th.join();
  }

  for (int64_t t = 1; t < nt; ++t) {
    for (int64_t i = 0; i < k * d; ++i) parts[0].sums[i] += parts[t].sums[i];
    for (int64_t i = 0; i < k; ++i) parts[0].counts[i] += parts[t].counts[i];
    parts[0].inertia += parts[t].inertia;
  }
  float* sp = sums->typed_data();
  float* np_ = counts->typed_data();
  for (int64_t i = 0; i < k * d; ++i) sp[i] = static_cast<float>(parts[0].sums[i]);
  for (int64_t i = 0; i < k; ++i) np_[i] = static_cast<float>(parts[0].counts[i]);
  inertia->typed_data()[0] = static_cast<float>(parts[0].inertia);
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LloydPass, LloydPassImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // x
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("n_threads")
                                  .Attr<int64_t>("use_xla_pool")
                                  .Ret<ffi::Buffer<ffi::S32>>()   // labels
                                  .Ret<ffi::Buffer<ffi::F32>>()   // sums
                                  .Ret<ffi::Buffer<ffi::F32>>()   // counts
                                  .Ret<ffi::Buffer<ffi::F32>>());  // inertia
