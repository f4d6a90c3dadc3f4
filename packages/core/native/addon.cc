// owlet's optional native CPU accelerator: a Node-API add-on (no V8 or libuv API, C only through
// node_api.h) with its own thread pool. It is built from source by scripts/build-native.mjs when a
// C++ compiler exists and loaded by @owlet/core's CPU engine when present; without it the engine
// runs the WASM kernels, with the same layouts and numerics (see ../src/cpu/README.md).
//
// Every entry point is synchronous: the calling JS thread publishes a job, takes part in it and
// returns when every task is done. Typed arrays are read and written in place (no copies).
#include <node_api.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if (defined(__x86_64__) || defined(_M_X64)) && !defined(OWLET_NO_X86)
#include <immintrin.h>
#define OWLET_X86 1
#endif

#include "kernels.h"

using namespace owlet;

// ---------------------------------------------------------------------------------------------
// thread pool: tasks are claimed one by one from a shared counter (a descheduled thread on a busy
// machine delays nothing but its own task); workers spin ~0.2 ms for the next job, then sleep.

namespace {

inline void cpu_relax() {
#ifdef OWLET_X86
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

struct Job {
  void (*fn)(void* ctx, int task, int thread);
  void* ctx;
  int ntasks;
};

class Pool {
 public:
  explicit Pool(int threads) : nthreads_(threads < 1 ? 1 : threads) {
    for (int t = 1; t < nthreads_; t++) workers_.emplace_back([this, t] { loop(t); });
  }
  ~Pool() {
    stop_.store(true);
    wake_.fetch_add(1);
    wake_.notify_all();
    for (auto& w : workers_) w.join();
  }
  int threads() const { return nthreads_; }

  void run(int ntasks, void (*fn)(void*, int, int), void* ctx) {
    if (ntasks <= 0) return;
    if (nthreads_ == 1 || ntasks == 1) {
      for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
      return;
    }
    job_ = Job{fn, ctx, ntasks};
    completed_.store(0, std::memory_order_relaxed);
    const uint64_t gen = ++gen_;
    limit_.store((gen << 32) | (uint32_t)ntasks, std::memory_order_release);
    claim_.store(gen << 32, std::memory_order_seq_cst);
    if (sleepers_.load(std::memory_order_seq_cst) > 0) {
      wake_.fetch_add(1);
      wake_.notify_all();
    }
    work(gen, 0);
    // wait for tasks other threads claimed
    int spins = 0;
    while (completed_.load(std::memory_order_acquire) < ntasks) {
      if (++spins < 4096)
        cpu_relax();
      else
        std::this_thread::yield();
    }
  }

 private:
  void work(uint64_t gen, int thread) {
    for (;;) {
      uint64_t c = claim_.load(std::memory_order_acquire);
      if ((c >> 32) != gen) return;
      const uint64_t lim = limit_.load(std::memory_order_acquire);
      if ((lim >> 32) != gen || (c & 0xffffffffu) >= (lim & 0xffffffffu)) return;
      if (!claim_.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) continue;
      // the job cannot change before this task is counted complete
      const Job j = job_;
      j.fn(j.ctx, (int)(c & 0xffffffffu), thread);
      completed_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop(int thread) {
    uint64_t seen = 0;
    for (;;) {
      auto t0 = std::chrono::steady_clock::now();
      int spins = 0;
      for (;;) {
        if (stop_.load(std::memory_order_relaxed)) return;
        const uint64_t g = claim_.load(std::memory_order_acquire) >> 32;
        if (g != seen) {
          seen = g;
          work(g, thread);
          t0 = std::chrono::steady_clock::now();
          continue;
        }
        cpu_relax();
        if ((++spins & 255) == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::microseconds(200)) break;
      }
      // sleep until the next job (or stop)
      const uint32_t w = wake_.load();
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      if ((claim_.load(std::memory_order_seq_cst) >> 32) == seen && !stop_.load()) wake_.wait(w);
      sleepers_.fetch_sub(1);
    }
  }

  const int nthreads_;
  std::vector<std::thread> workers_;
  Job job_{nullptr, nullptr, 0};
  uint64_t gen_ = 0;
  std::atomic<uint64_t> claim_{0};
  std::atomic<uint64_t> limit_{0};
  std::atomic<int> completed_{0};
  std::atomic<uint32_t> wake_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<bool> stop_{false};
};

const Kernels* select_kernels(std::string& isa) {
#ifdef OWLET_X86
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  const bool avx2 =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  const char* force = std::getenv("OWLET_NATIVE_ISA");
  const std::string f = force ? force : "";
  if (avx512 && kernels_avx512() && (f.empty() || f == "avx512")) {
    isa = "avx512";
    return kernels_avx512();
  }
  if (avx2 && kernels_avx2() && (f.empty() || f == "avx512" || f == "avx2")) {
    isa = "avx2";
    return kernels_avx2();
  }
#endif
  isa = "scalar";
  return kernels_scalar();
}

struct Instance {
  std::unique_ptr<Pool> pool;
  const Kernels* k = nullptr;
  std::string isa;
  std::vector<int16_t> qs;
  std::vector<float> qd;
  std::vector<int32_t> sx;
  std::vector<float> scratch;  // attention: per thread
};

// ---------------------------------------------------------------------------------------------
// N-API helpers

#define CHECK(call)                                  \
  do {                                               \
    if ((call) != napi_ok) return fail(env, #call);  \
  } while (0)

napi_value fail(napi_env env, const char* what) {
  const napi_extended_error_info* info = nullptr;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) {
    std::string m = std::string("owlet native: ") + what;
    if (info && info->error_message) m += std::string(": ") + info->error_message;
    napi_throw_error(env, "OWLET_NATIVE", m.c_str());
  }
  return nullptr;
}

napi_value throw_arg(napi_env env, const std::string& m) {
  napi_throw_type_error(env, "OWLET_NATIVE_ARGUMENT", ("owlet native: " + m).c_str());
  return nullptr;
}

struct Args {
  napi_env env;
  size_t argc = 16;
  napi_value argv[16];
  Instance* inst = nullptr;
  bool ok = true;
  std::string err;

  Args(napi_env e, napi_callback_info info) : env(e) {
    if (napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) != napi_ok) ok = false;
    void* d = nullptr;
    if (napi_get_instance_data(env, &d) != napi_ok || !d) ok = false;
    inst = (Instance*)d;
  }
  bool bad(const std::string& m) {
    if (ok) err = m;
    ok = false;
    return false;
  }
  int i32(size_t i) {
    int32_t v = 0;
    if (i >= argc || napi_get_value_int32(env, argv[i], &v) != napi_ok) bad("argument " + std::to_string(i) + " must be an integer");
    return v;
  }
  double f64(size_t i) {
    double v = 0;
    if (i >= argc || napi_get_value_double(env, argv[i], &v) != napi_ok) bad("argument " + std::to_string(i) + " must be a number");
    return v;
  }
  bool isNull(size_t i) {
    if (i >= argc) return true;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  /** A typed array's data, length in elements, element type. */
  void* typed(size_t i, napi_typedarray_type want, size_t* len, bool nullable = false) {
    if (nullable && isNull(i)) {
      *len = 0;
      return nullptr;
    }
    bool is = false;
    if (i >= argc || napi_is_typedarray(env, argv[i], &is) != napi_ok || !is) {
      bad("argument " + std::to_string(i) + " must be a typed array");
      return nullptr;
    }
    napi_typedarray_type t;
    void* data = nullptr;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, argv[i], &t, len, &data, &ab, &off) != napi_ok || t != want) {
      bad("argument " + std::to_string(i) + " has the wrong element type");
      return nullptr;
    }
    return data;
  }
  float* f32(size_t i, size_t need, bool nullable = false) {
    size_t n = 0;
    float* p = (float*)typed(i, napi_float32_array, &n, nullable);
    if (p && n < need) bad("argument " + std::to_string(i) + " holds " + std::to_string(n) + " floats, needs " + std::to_string(need));
    return p;
  }
  uint8_t* u8(size_t i, size_t need) {
    size_t n = 0;
    uint8_t* p = (uint8_t*)typed(i, napi_uint8_array, &n);
    if (p && n < need) bad("argument " + std::to_string(i) + " holds " + std::to_string(n) + " bytes, needs " + std::to_string(need));
    return p;
  }
  napi_value error() { return throw_arg(env, err); }
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// ---------------------------------------------------------------------------------------------
// linear: y [n, out] = x [n, k] · Wᵀ (+ bias), W in an x16 layout

struct LinearCtx {
  const Kernels* k;
  int dtype;
  const uint8_t* w;
  const float* x;
  QAct q;
  int16_t* qs;
  float* qd;
  int32_t* sx;
  int n, kdim, out;
  float* y;
  const float* bias;
  int ichunk, gchunk, ntg;
};

void quant_task(void* p, int t, int) {
  auto* c = (LinearCtx*)p;
  const int i0 = t * 16, i1 = i0 + 16 < c->n ? i0 + 16 : c->n;
  c->k->quant_act(c->x, i0, i1, c->kdim, c->qs, c->qd, c->sx);
}

void linear_task(void* p, int t, int) {
  auto* c = (LinearCtx*)p;
  const int ti = t / c->ntg, tg = t % c->ntg;
  const int groups = (c->out + G - 1) / G;
  const int i0 = ti * c->ichunk, i1 = i0 + c->ichunk < c->n ? i0 + c->ichunk : c->n;
  const int g0 = tg * c->gchunk, g1 = g0 + c->gchunk < groups ? g0 + c->gchunk : groups;
  switch (c->dtype) {
    case F32: c->k->gemm_f32(c->w, c->x, i0, i1, c->kdim, c->y, c->out, c->out, g0, g1, c->bias); break;
    case F16: c->k->gemm_f16(c->w, c->x, i0, i1, c->kdim, c->y, c->out, c->out, g0, g1, c->bias); break;
    case Q8: c->k->gemm_q8(c->w, c->q, i0, i1, c->kdim, c->y, c->out, c->out, g0, g1, c->bias); break;
    case Q4: c->k->gemm_q4(c->w, c->q, i0, i1, c->kdim, c->y, c->out, c->out, g0, g1, c->bias); break;
  }
}

/** linear(dtype, w: Uint8Array, x: Float32Array, n, k, out, y: Float32Array, bias: Float32Array | null) */
napi_value Linear(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int dtype = a.i32(0), n = a.i32(3), k = a.i32(4), out = a.i32(5);
  if (!a.ok) return a.error();
  if (dtype < 0 || dtype > 3 || n < 1 || k < 1 || out < 1 || ((dtype == Q8 || dtype == Q4) && k % QK))
    return throw_arg(env, "linear: bad dtype or shape");
  const int groups = (out + G - 1) / G;
  const uint8_t* w = a.u8(1, group_bytes(dtype, k) * groups);
  const float* x = a.f32(2, (size_t)n * k);
  float* y = a.f32(6, (size_t)n * out);
  const float* bias = a.f32(7, out, true);
  if (!a.ok) return a.error();
  Instance* in = a.inst;
  LinearCtx c{in->k, dtype, w, x, {}, nullptr, nullptr, nullptr, n, k, out, y, bias, 0, 0, 0};
  if (dtype == Q8 || dtype == Q4) {
    const size_t nb = (size_t)n * (k / QK);
    if (in->qs.size() < (size_t)n * k) in->qs.resize((size_t)n * k);
    if (in->qd.size() < nb) {
      in->qd.resize(nb);
      in->sx.resize(nb);
    }
    c.qs = in->qs.data();
    c.qd = in->qd.data();
    c.sx = in->sx.data();
    c.q = QAct{c.qs, c.qd, c.sx};
    in->pool->run((n + 15) / 16, quant_task, &c);
  }
  // tasks: chunks of activation rows × chunks of row groups, ~4 or more per thread
  const int T = in->pool->threads();
  c.ichunk = n <= 64 ? n : 64;
  const int ti = (n + c.ichunk - 1) / c.ichunk;
  int gchunk = 4;
  while (gchunk > 1 && ti * ((groups + gchunk - 1) / gchunk) < 4 * T) gchunk /= 2;
  c.gchunk = gchunk;
  c.ntg = (groups + gchunk - 1) / gchunk;
  in->pool->run(ti * c.ntg, linear_task, &c);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// elementwise ops, split over rows / ranges

struct RowCtx {
  const Kernels* k;
  int op;
  const float *x, *w, *b, *u, *cs, *sn;
  float* y;
  int rows, d, H, L, Bc;
  float eps;
  size_t n;
  int per;
};

void row_task(void* p, int t, int) {
  auto* c = (RowCtx*)p;
  if (c->op <= 2) {
    const int r0 = t * c->per, r1 = r0 + c->per < c->rows ? r0 + c->per : c->rows;
    if (c->op == 0) c->k->rms_norm(c->x, c->w, c->y, r0, r1, c->d, c->eps);
    if (c->op == 1) c->k->layer_norm(c->x, c->w, c->b, c->y, r0, r1, c->d, c->eps);
    if (c->op == 2) c->k->rope(c->x, c->cs, c->sn, c->y, r0, r1, c->H, c->L, c->d, c->Bc);
    return;
  }
  const size_t i0 = (size_t)t * c->per, i1 = i0 + c->per < c->n ? i0 + c->per : c->n;
  if (c->op == 3) c->k->swiglu(c->x, c->u, c->y, i0, i1);
  if (c->op == 4) c->k->gelu(c->x, c->y, i0, i1);
  if (c->op == 5) c->k->quick_gelu(c->x, c->y, i0, i1);
}

void run_rows(Instance* in, RowCtx& c) {
  // ≥ 32k values per task: below that, waking a thread costs more than it saves
  const size_t per_row = (size_t)c.d;
  int per = (int)((32768 + per_row - 1) / per_row);
  if (per < 1) per = 1;
  c.per = per;
  in->pool->run((c.rows + per - 1) / per, row_task, &c);
}

void run_flat(Instance* in, RowCtx& c) {
  c.per = 65536;
  in->pool->run((int)((c.n + c.per - 1) / c.per), row_task, &c);
}

/** rmsNorm(x, w | null, y, rows, d, eps) */
napi_value RmsNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int rows = a.i32(3), d = a.i32(4);
  const double eps = a.f64(5);
  if (!a.ok) return a.error();
  RowCtx c{};
  c.k = a.inst->k;
  c.op = 0;
  c.x = a.f32(0, (size_t)rows * d);
  c.w = a.f32(1, d, true);
  c.y = a.f32(2, (size_t)rows * d);
  c.rows = rows;
  c.d = d;
  c.eps = (float)eps;
  if (!a.ok) return a.error();
  run_rows(a.inst, c);
  return undefined(env);
}

/** layerNorm(x, w | null, b | null, y, rows, d, eps) */
napi_value LayerNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int rows = a.i32(4), d = a.i32(5);
  const double eps = a.f64(6);
  if (!a.ok) return a.error();
  RowCtx c{};
  c.k = a.inst->k;
  c.op = 1;
  c.x = a.f32(0, (size_t)rows * d);
  c.w = a.f32(1, d, true);
  c.b = a.f32(2, d, true);
  c.y = a.f32(3, (size_t)rows * d);
  c.rows = rows;
  c.d = d;
  c.eps = (float)eps;
  if (!a.ok) return a.error();
  run_rows(a.inst, c);
  return undefined(env);
}

/** rope(x, cos, sin, y, B, H, L, D, Bc) */
napi_value Rope(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int B = a.i32(4), H = a.i32(5), L = a.i32(6), D = a.i32(7), Bc = a.i32(8);
  if (!a.ok) return a.error();
  if (D % 2 || (Bc != 1 && Bc != B)) return throw_arg(env, "rope: bad shape");
  RowCtx c{};
  c.k = a.inst->k;
  c.op = 2;
  c.x = a.f32(0, (size_t)B * H * L * D);
  c.cs = a.f32(1, (size_t)Bc * L * D);
  c.sn = a.f32(2, (size_t)Bc * L * D);
  c.y = a.f32(3, (size_t)B * H * L * D);
  c.rows = B * H * L;
  c.d = D;
  c.H = H;
  c.L = L;
  c.Bc = Bc;
  if (!a.ok) return a.error();
  run_rows(a.inst, c);
  return undefined(env);
}

napi_value Unary(napi_env env, napi_callback_info info, int op) {
  Args a(env, info);
  size_t n = 0;
  RowCtx c{};
  c.k = a.inst ? a.inst->k : nullptr;
  c.op = op;
  int arg = 0;
  c.x = (const float*)a.typed(arg++, napi_float32_array, &n);
  if (op == 3) c.u = a.f32(arg++, n);
  c.y = a.f32(arg, n);
  c.n = n;
  if (!a.ok) return a.error();
  run_flat(a.inst, c);
  return undefined(env);
}
napi_value Swiglu(napi_env env, napi_callback_info info) { return Unary(env, info, 3); }
napi_value Gelu(napi_env env, napi_callback_info info) { return Unary(env, info, 4); }
napi_value QuickGelu(napi_env env, napi_callback_info info) { return Unary(env, info, 5); }

// ---------------------------------------------------------------------------------------------
// attention

struct AttnCtx {
  const Kernels* k;
  AttnArgs a;
  float* scratch;
  size_t per;
};

void attn_task(void* p, int t, int thread) {
  auto* c = (AttnCtx*)p;
  c->k->attention(c->a, t, c->scratch + c->per * thread);
}

/**
 * attention(q, ks: Float32Array[], vs: Float32Array[], out, B, H, Hkv, Lq, D, scale, causal,
 *           mask | null, ms0, ms1, ms2)
 */
napi_value Attention(napi_env env, napi_callback_info info) {
  Args a(env, info);
  AttnArgs at{};
  at.B = a.i32(4);
  at.H = a.i32(5);
  at.Hkv = a.i32(6);
  at.Lq = a.i32(7);
  at.D = a.i32(8);
  at.scale = (float)a.f64(9);
  bool causal = false;
  if (a.argc > 10) napi_get_value_bool(env, a.argv[10], &causal);
  at.causal = causal ? 1 : 0;
  if (!a.ok) return a.error();
  if (at.B < 1 || at.H < 1 || at.Hkv < 1 || at.H % at.Hkv || at.Lq < 1 || at.D < 1)
    return throw_arg(env, "attention: bad shape");
  const size_t qn = (size_t)at.B * at.H * at.Lq * at.D;
  at.q = a.f32(0, qn);
  at.out = a.f32(3, qn);
  if (!a.ok) return a.error();
  uint32_t nk = 0, nv = 0;
  bool isArr = false;
  napi_is_array(env, a.argv[1], &isArr);
  if (!isArr) return throw_arg(env, "attention: keys must be an array");
  napi_is_array(env, a.argv[2], &isArr);
  if (!isArr) return throw_arg(env, "attention: values must be an array");
  napi_get_array_length(env, a.argv[1], &nk);
  napi_get_array_length(env, a.argv[2], &nv);
  if (nk == 0 || nk != nv) return throw_arg(env, "attention: keys and values differ in number");
  std::vector<const float*> kp(nk), vp(nk);
  std::vector<int> lens(nk);
  int Lk = 0;
  const size_t per_pos = (size_t)at.B * at.Hkv * at.D;
  for (uint32_t s = 0; s < nk; s++) {
    napi_value ek, ev;
    napi_get_element(env, a.argv[1], s, &ek);
    napi_get_element(env, a.argv[2], s, &ev);
    napi_typedarray_type t1, t2;
    size_t l1 = 0, l2 = 0, o;
    void *d1 = nullptr, *d2 = nullptr;
    napi_value ab;
    if (napi_get_typedarray_info(env, ek, &t1, &l1, &d1, &ab, &o) != napi_ok ||
        napi_get_typedarray_info(env, ev, &t2, &l2, &d2, &ab, &o) != napi_ok || t1 != napi_float32_array ||
        t2 != napi_float32_array || l1 != l2 || l1 % per_pos)
      return throw_arg(env, "attention: a key/value segment is not a Float32Array of [B, Hkv, n, D]");
    kp[s] = (const float*)d1;
    vp[s] = (const float*)d2;
    lens[s] = (int)(l1 / per_pos);
    Lk += lens[s];
  }
  at.nseg = (int)nk;
  at.k = kp.data();
  at.v = vp.data();
  at.len = lens.data();
  at.Lk = Lk;
  if (at.causal && Lk < at.Lq) return throw_arg(env, "attention: causal needs at least as many keys as queries");
  if (!a.isNull(11)) {
    size_t ml = 0;
    at.mask = (const float*)a.typed(11, napi_float32_array, &ml);
    at.ms0 = (int64_t)a.f64(12);
    at.ms1 = (int64_t)a.f64(13);
    at.ms2 = (int64_t)a.f64(14);
    if (!a.ok) return a.error();
    const int64_t last = (at.B - 1) * at.ms0 + (at.H - 1) * at.ms1 + (at.Lq - 1) * at.ms2 + Lk;
    if (last > (int64_t)ml) return throw_arg(env, "attention: the mask is smaller than its strides say");
  }
  Instance* in = a.inst;
  AttnCtx c{in->k, at, nullptr, attention_scratch(at)};
  const size_t need = c.per * in->pool->threads();
  if (in->scratch.size() < need) in->scratch.resize(need);
  c.scratch = in->scratch.data();
  in->pool->run(at.B * at.H, attn_task, &c);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------
// packing: row-major values or canonical GGUF blocks → x16 layouts (and back)

inline uint16_t f32_to_f16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x7f800000u) return (uint16_t)(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);
  if (x < 0x38800000u) {
    float a;
    std::memcpy(&a, &x, 4);
    const float v = a * 16777216.0f;  // · 2^24: half subnormal units
    const float magic = 12582912.0f;
    return (uint16_t)(sign | (uint32_t)((v + magic) - magic));
  }
  const uint32_t r = x + 0x0fffu + ((x >> 13) & 1u);
  return (uint16_t)(sign | ((r - 0x38000000u) >> 13));
}

/** ggml's quantize_row_q8_0_ref for one block (34 bytes). */
void q8_block(const float* x, uint8_t* o) {
  float amax = 0;
  for (int j = 0; j < QK; j++) {
    const float v = std::fabs(x[j]);
    if (v > amax) amax = v;
  }
  const float d = amax / 127.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  const uint16_t h = f32_to_f16(d);
  std::memcpy(o, &h, 2);
  for (int j = 0; j < QK; j++) o[2 + j] = (uint8_t)(int8_t)std::roundf(x[j] * id);
}

/** ggml's quantize_row_q4_0_ref for one block (18 bytes). */
void q4_block(const float* x, uint8_t* o) {
  float amax = 0, mx = 0;
  for (int j = 0; j < QK; j++) {
    const float v = x[j];
    if (amax < std::fabs(v)) {
      amax = std::fabs(v);
      mx = v;
    }
  }
  const float d = mx / -8.0f;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  const uint16_t h = f32_to_f16(d);
  std::memcpy(o, &h, 2);
  for (int j = 0; j < 16; j++) {
    const float x0 = x[j] * id, x1 = x[16 + j] * id;
    int a = (int)(int8_t)(x0 + 8.5f), b = (int)(int8_t)(x1 + 8.5f);
    a = a < 15 ? a : 15;
    b = b < 15 ? b : 15;
    o[2 + j] = (uint8_t)(a | (b << 4));
  }
}

/** Places canonical block `blk` of row r (within group g) into the x16 group. */
inline void place_block(int dtype, const uint8_t* blk, uint8_t* gdst, int b, int r) {
  if (dtype == Q8) {
    uint8_t* wb = gdst + (size_t)b * 544;
    std::memcpy(wb + 2 * r, blk, 2);
    for (int m = 0; m < 16; m++) {
      wb[32 + 32 * m + 2 * r] = blk[2 + 2 * m];
      wb[32 + 32 * m + 2 * r + 1] = blk[2 + 2 * m + 1];
    }
  } else {
    uint8_t* wb = gdst + (size_t)b * 288;
    std::memcpy(wb + 2 * r, blk, 2);
    for (int t = 0; t < 8; t++) {
      wb[32 + 32 * t + 2 * r] = blk[2 + 2 * t];
      wb[32 + 32 * t + 2 * r + 1] = blk[2 + 2 * t + 1];
    }
  }
}

inline void take_block(int dtype, const uint8_t* gsrc, int b, int r, uint8_t* blk) {
  if (dtype == Q8) {
    const uint8_t* wb = gsrc + (size_t)b * 544;
    std::memcpy(blk, wb + 2 * r, 2);
    for (int m = 0; m < 16; m++) {
      blk[2 + 2 * m] = wb[32 + 32 * m + 2 * r];
      blk[2 + 2 * m + 1] = wb[32 + 32 * m + 2 * r + 1];
    }
  } else {
    const uint8_t* wb = gsrc + (size_t)b * 288;
    std::memcpy(blk, wb + 2 * r, 2);
    for (int t = 0; t < 8; t++) {
      blk[2 + 2 * t] = wb[32 + 32 * t + 2 * r];
      blk[2 + 2 * t + 1] = wb[32 + 32 * t + 2 * r + 1];
    }
  }
}

struct PackCtx {
  int mode;  // 0: float rows → x16 (quantizing), 1: canonical bytes → x16, 2: x16 → canonical bytes
  int dtype, out, k;
  const float* xf;
  const uint8_t* src;
  uint8_t* dst;
};

inline size_t canon_row_bytes(int dtype, int k) {
  return dtype == F32 ? 4ull * k : dtype == F16 ? 2ull * k : dtype == Q8 ? (size_t)(k / QK) * 34 : (size_t)(k / QK) * 18;
}

void pack_task(void* p, int g, int) {
  auto* c = (PackCtx*)p;
  const int k = c->k;
  const size_t gb = group_bytes(c->dtype, k);
  const size_t rb = canon_row_bytes(c->dtype, k);
  uint8_t* gx = c->mode == 2 ? nullptr : c->dst + gb * g;
  const uint8_t* gs = c->mode == 2 ? c->src + gb * g : nullptr;
  if (gx) std::memset(gx, 0, gb);
  const int nb = k / QK;
  uint8_t blk[34];
  for (int r = 0; r < G; r++) {
    const int row = g * G + r;
    if (row >= c->out) break;
    if (c->dtype == F32 || c->dtype == F16) {
      for (int j = 0; j < k; j++) {
        if (c->dtype == F32) {
          if (c->mode == 0) std::memcpy(gx + ((size_t)j * G + r) * 4, c->xf + (size_t)row * k + j, 4);
          else if (c->mode == 1) std::memcpy(gx + ((size_t)j * G + r) * 4, c->src + rb * row + 4ull * j, 4);
          else std::memcpy(c->dst + rb * row + 4ull * j, gs + ((size_t)j * G + r) * 4, 4);
        } else {
          if (c->mode == 0) {
            const uint16_t h = f32_to_f16(c->xf[(size_t)row * k + j]);
            std::memcpy(gx + ((size_t)j * G + r) * 2, &h, 2);
          } else if (c->mode == 1) {
            std::memcpy(gx + ((size_t)j * G + r) * 2, c->src + rb * row + 2ull * j, 2);
          } else {
            std::memcpy(c->dst + rb * row + 2ull * j, gs + ((size_t)j * G + r) * 2, 2);
          }
        }
      }
      continue;
    }
    const size_t bb = c->dtype == Q8 ? 34 : 18;
    for (int b = 0; b < nb; b++) {
      if (c->mode == 0) {
        if (c->dtype == Q8) q8_block(c->xf + (size_t)row * k + (size_t)b * QK, blk);
        else q4_block(c->xf + (size_t)row * k + (size_t)b * QK, blk);
        place_block(c->dtype, blk, gx, b, r);
      } else if (c->mode == 1) {
        place_block(c->dtype, c->src + rb * row + bb * b, gx, b, r);
      } else {
        take_block(c->dtype, gs, b, r, c->dst + rb * row + bb * b);
      }
    }
  }
}

/** pack(mode, dtype, src: Float32Array | Uint8Array, out, k, dst: Uint8Array) */
napi_value Pack(napi_env env, napi_callback_info info) {
  Args a(env, info);
  PackCtx c{};
  c.mode = a.i32(0);
  c.dtype = a.i32(1);
  c.out = a.i32(3);
  c.k = a.i32(4);
  if (!a.ok) return a.error();
  if (c.mode < 0 || c.mode > 2 || c.dtype < 0 || c.dtype > 3 || c.out < 1 || c.k < 1 ||
      ((c.dtype == Q8 || c.dtype == Q4) && c.k % QK))
    return throw_arg(env, "pack: bad mode, dtype or shape");
  const int groups = (c.out + G - 1) / G;
  const size_t xb = group_bytes(c.dtype, c.k) * groups;
  const size_t cb = canon_row_bytes(c.dtype, c.k) * c.out;
  if (c.mode == 0) c.xf = a.f32(2, (size_t)c.out * c.k);
  else c.src = a.u8(2, c.mode == 1 ? cb : xb);
  c.dst = a.u8(5, c.mode == 2 ? cb : xb);
  if (!a.ok) return a.error();
  a.inst->pool->run(groups, pack_task, &c);
  return undefined(env);
}

/** info() → { isa, threads } */
napi_value Info(napi_env env, napi_callback_info info) {
  Args a(env, info);
  if (!a.ok) return fail(env, "instance");
  napi_value o, isa, th;
  CHECK(napi_create_object(env, &o));
  CHECK(napi_create_string_utf8(env, a.inst->isa.c_str(), NAPI_AUTO_LENGTH, &isa));
  CHECK(napi_create_int32(env, a.inst->pool->threads(), &th));
  CHECK(napi_set_named_property(env, o, "isa", isa));
  CHECK(napi_set_named_property(env, o, "threads", th));
  return o;
}

/** setThreads(n): replaces the pool. */
napi_value SetThreads(napi_env env, napi_callback_info info) {
  Args a(env, info);
  const int n = a.i32(0);
  if (!a.ok) return a.error();
  if (n < 1 || n > 1024) return throw_arg(env, "setThreads: threads must be in 1 … 1024");
  a.inst->pool.reset();
  a.inst->pool = std::make_unique<Pool>(n);
  return undefined(env);
}

void finalize(napi_env, void* data, void*) { delete (Instance*)data; }

}  // namespace

#ifndef OWLET_X86
namespace owlet {
const Kernels* kernels_avx2() { return nullptr; }
const Kernels* kernels_avx512() { return nullptr; }
}  // namespace owlet
#endif

NAPI_MODULE_INIT() {
  auto* inst = new Instance();
  inst->k = select_kernels(inst->isa);
  inst->pool = std::make_unique<Pool>(1);
  if (napi_set_instance_data(env, inst, finalize, nullptr) != napi_ok) {
    delete inst;
    return nullptr;
  }
  const napi_property_descriptor props[] = {
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"linear", nullptr, Linear, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"pack", nullptr, Pack, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"rmsNorm", nullptr, RmsNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"layerNorm", nullptr, LayerNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"rope", nullptr, Rope, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"swiglu", nullptr, Swiglu, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"gelu", nullptr, Gelu, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"quickGelu", nullptr, QuickGelu, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"attention", nullptr, Attention, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props) != napi_ok) return nullptr;
  return exports;
}
