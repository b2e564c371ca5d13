"""C source of the native CPU kernels of the ``cddfuse`` preset (compiled on first use by :mod:`._native`).

Kept as a Python string so that it ships with the package like any other module. Everything
here is portable C99 plus GCC/Clang vector types (no intrinsics, no assembly); the compiler
vectorises the inner loops. Floating-point
semantics are strict IEEE (no fast-math, no FMA contraction): the SSIM kernel reproduces
scikit-image's float32 arithmetic bit for bit and relies on it.

One call scores a batch of N images, one image after the other, so several Python threads can
call it on different slices of a batch at the same time (ctypes releases the GIL).
"""

C_SOURCE = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#define FB_ABI_VERSION 7

int fb_abi_version(void) { return FB_ABI_VERSION; }

/* ---------------------------------------------------------------------------------------
 * luma as OpenCV's optimised float32 BGR2GRAY: fmaf(R, 0.299f, fmaf(B, 0.114f, G*0.587f)) (the
 * hardware fused multiply-add OpenCV's SIMD path uses; equal, on every colour, to the eager path's
 * exact float64 product-and-sum rounded to float32); rounded half to even, as uint8
 * ------------------------------------------------------------------------------------- */
static inline uint8_t luma_px(uint8_t r, uint8_t g, uint8_t b) {
    float y = (float)g * 0.587f;
    y = fmaf((float)b, 0.114f, y);
    y = fmaf((float)r, 0.299f, y);
    /* no clamp needed: 0 <= y <= 255 * (0.114f + 0.587f + 0.299f) < 255.5 (checked on every colour) */
    return (uint8_t)(int)rintf(y);
}

/* c: 1 (grey), 3 (planar R, G, B planes), -3 (interleaved RGB, channels last) or -4 (RGBX) */
static void luma_plane(const uint8_t *src, int c, int64_t hw, uint8_t *dst) {
    if (c == 1) { memcpy(dst, src, (size_t)hw); return; }
    /* interleaved RGBX (as Pillow holds RGB images) or RGB: constant strides, so the loops vectorise */
    if (c == -4) {
        for (int64_t i = 0; i < hw; i++) dst[i] = luma_px(src[4 * i], src[4 * i + 1], src[4 * i + 2]);
        return;
    }
    if (c == -3) {
        for (int64_t i = 0; i < hw; i++) dst[i] = luma_px(src[3 * i], src[3 * i + 1], src[3 * i + 2]);
        return;
    }
    const uint8_t *r = src, *g = src + hw, *b = src + 2 * hw;
    for (int64_t i = 0; i < hw; i++) dst[i] = luma_px(r[i], g[i], b[i]);
}

void fb_luma(int64_t n, int64_t hw, const uint8_t *src, int c, uint8_t *dst) {
    for (int64_t i = 0; i < n; i++) luma_plane(src + i * (c < 0 ? -c : c) * hw, c, hw, dst + i * hw);
}

/* ---------------------------------------------------------------------------------------
 * SSIM, scikit-image structural_similarity on float32 images (7x7 box window, sample
 * covariance, data_range given), bit for bit on integer-valued images.
 *
 * scipy.ndimage.uniform_filter: axis 0 first, a running window sum in double divided by 7 in
 * double, stored as float32; then axis 1 over those float32 values, same arithmetic. On integer
 * data every window sum is exact (in int32 for the first pass, in double for the second: sums
 * of seven float32 values of magnitude < 2^16 whose ulp is >= 2^-26), so a sliding or a direct
 * sum gives the same value as scipy's running sum. Only the 'valid' window positions enter the
 * mean (skimage crops (7-1)/2 pixels), so reflect padding never matters.
 * ------------------------------------------------------------------------------------- */
#define NQ 8  /* x, xx, y1, y1y1, xy1, y2, y2y2, xy2 */

/* one SSIM map value, float32 as numpy computes it, from the means of x (ux, uxx; uxux = ux * ux,
   vx = cn * (uxx - uxux) precomputed) and of y, y * y, x * y */
static inline float ssim_px(float ux, float uxux, float vx, float uy, float uyy, float uxy, float cn, float c1,
                            float c2) {
    float uyuy = uy * uy, uxuy = ux * uy;
    float vy = cn * (uyy - uyuy), vxy = cn * (uxy - uxuy);
    float a1 = 2.0f * uxuy + c1, a2 = 2.0f * vxy + c2;
    float b1 = (uxux + uyuy) + c1, b2 = (vx + vy) + c2;
    return (a1 * a2) / (b1 * b2);
}

/* both SSIM maps of one row, (x, y1) and (x, y2), from the NQ second-pass mean rows u (n each),
   added per column to acc[0 .. n) and acc[n .. 2n); x's terms are computed once for both */
__attribute__((noinline)) static void ssim_rows(const float *restrict u, int64_t n, float cn, float c1, float c2,
                                                double *restrict acc) {
    const float *ux_ = u, *uxx_ = u + n, *uy1 = u + 2 * n, *uyy1 = u + 3 * n, *uxy1 = u + 4 * n,
                *uy2 = u + 5 * n, *uyy2 = u + 6 * n, *uxy2 = u + 7 * n;
    for (int64_t j = 0; j < n; j++) {
        float ux = ux_[j], uxux = ux * ux, vx = cn * (uxx_[j] - uxux);
        acc[j] += (double)ssim_px(ux, uxux, vx, uy1[j], uyy1[j], uxy1[j], cn, c1, c2);
        acc[n + j] += (double)ssim_px(ux, uxux, vx, uy2[j], uyy2[j], uxy2[j], cn, c1, c2);
    }
}

/* column sums of the 8 SSIM quantities: add rows x/y1/y2 and (unless xo is NULL) remove rows xo/y1o/y2o */
__attribute__((noinline)) static void colsum_add(
        int64_t w, int32_t *restrict c0, int32_t *restrict c1, int32_t *restrict c2, int32_t *restrict c3,
        int32_t *restrict c4, int32_t *restrict c5, int32_t *restrict c6, int32_t *restrict c7,
        const uint8_t *restrict x, const uint8_t *restrict y1, const uint8_t *restrict y2) {
    for (int64_t j = 0; j < w; j++) {
        int32_t xv = x[j], a = y1[j], b = y2[j];
        c0[j] += xv; c1[j] += xv * xv; c2[j] += a; c3[j] += a * a; c4[j] += xv * a;
        c5[j] += b; c6[j] += b * b; c7[j] += xv * b;
    }
}

__attribute__((noinline)) static void colsum_slide(
        int64_t w, int32_t *restrict c0, int32_t *restrict c1, int32_t *restrict c2, int32_t *restrict c3,
        int32_t *restrict c4, int32_t *restrict c5, int32_t *restrict c6, int32_t *restrict c7,
        const uint8_t *restrict x, const uint8_t *restrict y1, const uint8_t *restrict y2,
        const uint8_t *restrict xo, const uint8_t *restrict y1o, const uint8_t *restrict y2o) {
    for (int64_t j = 0; j < w; j++) {
        int32_t xv = x[j], a = y1[j], b = y2[j], xq = xo[j], ao = y1o[j], bo = y2o[j];
        c0[j] += xv - xq; c1[j] += xv * xv - xq * xq;
        c2[j] += a - ao; c3[j] += a * a - ao * ao; c4[j] += xv * a - xq * ao;
        c5[j] += b - bo; c6[j] += b * b - bo * bo; c7[j] += xv * b - xq * bo;
    }
}

static void colsum_update(int32_t *cs, int64_t w, const uint8_t *x, const uint8_t *y1, const uint8_t *y2,
                          const uint8_t *xo, const uint8_t *y1o, const uint8_t *y2o) {
    if (xo == NULL)
        colsum_add(w, cs, cs + w, cs + 2 * w, cs + 3 * w, cs + 4 * w, cs + 5 * w, cs + 6 * w, cs + 7 * w, x, y1, y2);
    else
        colsum_slide(w, cs, cs + w, cs + 2 * w, cs + 3 * w, cs + 4 * w, cs + 5 * w, cs + 6 * w, cs + 7 * w,
                     x, y1, y2, xo, y1o, y2o);
}

/* float32(s / 7.0) of the integer column sums s, as double. For integers 0 <= s <= 7 * 255^2,
   the float32 quotient s / 7 (Markstein-corrected reciprocal multiplication, correctly rounded)
   equals scipy's float32(double(s) / 7) since s / 7 is either exact or at least 2^-3 ulp away
   from a float32 rounding boundary (checked exhaustively in the tests). */
__attribute__((noinline)) static void first_pass(const int32_t *restrict cs, int64_t w, double *restrict vd) {
    const float inv7 = 1.0f / 7.0f;
    for (int64_t j = 0; j < w; j++) {
        float sv = (float)cs[j];
        float q = sv * inv7;
        float r = fmaf(-q, 7.0f, sv);
        vd[j] = (double)fmaf(r, inv7, q);
    }
}

/* The horizontal pass runs on rows held in segment-interleaved order: the wo output columns are
   cut into SEG = 8 segments of L = ceil(wo / 8) columns, and element t * SEG + k of a permuted
   row is column k * L + t of the image, for t < L + 6 (each segment carries the 6 columns its last
   windows reach into; columns past the image are 0). The vertical pass and the first division
   are per column, so they run unchanged on permuted rows; the horizontal windows of output t of
   the 8 segments are then the 7 aligned vectors t .. t+6, slid along t with one add and one
   subtract per step, both exact (every partial sum is a sum of consecutive first-pass values,
   exact in double as said above). */
#define SEG 8

static inline uint64_t load64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* swap the (sh/8)-byte blocks of a and b selected by m: one step of an 8x8 byte transpose */
#define SWAP_BLOCKS(a, b, sh, m) { uint64_t d_ = (((a) >> (sh)) ^ (b)) & (m); (b) ^= d_; (a) ^= d_ << (sh); }

/* out[t * SEG + k] = in[k * L + t] for t < L + 6, eight columns of the eight segments at a time
   (an 8x8 byte transpose in 64-bit words). Reads up to in[8 * L + 13], i.e. 14 bytes past the
   row: the caller's buffers carry that slack. What lands past column w only enters outputs
   past wo, which are never summed. */
static void permute_row(const uint8_t *restrict in, int64_t L, uint8_t *restrict out) {
    for (int64_t t = 0; t < L + 6; t += 8) {
        uint64_t r0 = load64(in + t), r1 = load64(in + L + t), r2 = load64(in + 2 * L + t),
                 r3 = load64(in + 3 * L + t), r4 = load64(in + 4 * L + t), r5 = load64(in + 5 * L + t),
                 r6 = load64(in + 6 * L + t), r7 = load64(in + 7 * L + t);
        SWAP_BLOCKS(r0, r1, 8, 0x00FF00FF00FF00FFull); SWAP_BLOCKS(r2, r3, 8, 0x00FF00FF00FF00FFull);
        SWAP_BLOCKS(r4, r5, 8, 0x00FF00FF00FF00FFull); SWAP_BLOCKS(r6, r7, 8, 0x00FF00FF00FF00FFull);
        SWAP_BLOCKS(r0, r2, 16, 0x0000FFFF0000FFFFull); SWAP_BLOCKS(r1, r3, 16, 0x0000FFFF0000FFFFull);
        SWAP_BLOCKS(r4, r6, 16, 0x0000FFFF0000FFFFull); SWAP_BLOCKS(r5, r7, 16, 0x0000FFFF0000FFFFull);
        SWAP_BLOCKS(r0, r4, 32, 0x00000000FFFFFFFFull); SWAP_BLOCKS(r1, r5, 32, 0x00000000FFFFFFFFull);
        SWAP_BLOCKS(r2, r6, 32, 0x00000000FFFFFFFFull); SWAP_BLOCKS(r3, r7, 32, 0x00000000FFFFFFFFull);
        uint8_t *q = out + t * SEG;  /* eight 8-byte stores (one 64-byte store assembled from */
        memcpy(q, &r0, 8);           /* eight registers is 2.5x slower with AVX-512) */
        memcpy(q + 8, &r1, 8);
        memcpy(q + 16, &r2, 8);
        memcpy(q + 24, &r3, 8);
        memcpy(q + 32, &r4, 8);
        memcpy(q + 40, &r5, 8);
        memcpy(q + 48, &r6, 8);
        memcpy(q + 56, &r7, 8);
    }
}

/* u[t * SEG + k] = float32(RN64(window sum / 7)) for t < L, from the first-pass values v
   ((L + 6) * SEG, 64-byte aligned). The window sum slides as W(t+1) = W(t) + (v(t+7) - v(t)),
   every step exact; four independent running sums (four quarters of the row) hide the latency
   of that one dependent addition. Written with GCC/Clang vector types: a vector is the 8
   segments.

   The division takes one multiplication: for t = m * 2^-26, m an integer below 2^45 (every
   window sum here), float32(RN64(t * RN64(1/7))) = float32(RN64(t / 7)). Why: float32(RN64(x))
   = RN32(x) for x = t / 7, since the binary expansion of m / 7 repeats with period 3 and so never
   comes within 2^-53 relative of a float32 midpoint unless it is one; the product
   q = RN64(t * RN64(1/7)) is within |x| * 2^-52 of x; and a float32 midpoint M != x is at least
   2^-26 / 7 from x when x >= 1/4 (both lie on the 2^-26 grid times 1/7), far more than
   |x| * 2^-52 < 2^-36 (below 1/4 the midpoints' grid is finer and the distance scales with it).
   If x is a midpoint, q = x exactly and both round it to even. Checked in the tests on random
   sums and on midpoints and their neighbours. */
typedef double v8d __attribute__((vector_size(8 * SEG)));
typedef float v8f __attribute__((vector_size(4 * SEG)));

static inline v8d ld8d(const double *p) { v8d x; memcpy(&x, p, sizeof(x)); return x; }
static inline v8d window7(const double *p) {
    return ((ld8d(p) + ld8d(p + SEG)) + (ld8d(p + 2 * SEG) + ld8d(p + 3 * SEG)))
           + ((ld8d(p + 4 * SEG) + ld8d(p + 5 * SEG)) + ld8d(p + 6 * SEG));
}
static inline void st8f(float *p, v8d s) {
    v8f q = __builtin_convertvector(s * (1.0 / 7.0), v8f);
    memcpy(p, &q, sizeof(q));
}

__attribute__((noinline)) static void slide_pass(const double *restrict v, int64_t L, float *restrict u) {
    int64_t Q = L / 4;  /* chain c runs t in [c Q, (c + 1) Q); the last one also takes the rest */
    v8d w0 = window7(v), w1 = window7(v + Q * SEG), w2 = window7(v + 2 * Q * SEG), w3 = window7(v + 3 * Q * SEG);
    for (int64_t t = 0; t + 1 < Q; t++) {
        const double *p0 = v + t * SEG, *p1 = p0 + Q * SEG, *p2 = p1 + Q * SEG, *p3 = p2 + Q * SEG;
        st8f(u + t * SEG, w0); st8f(u + (t + Q) * SEG, w1);
        st8f(u + (t + 2 * Q) * SEG, w2); st8f(u + (t + 3 * Q) * SEG, w3);
        w0 = w0 + (ld8d(p0 + 7 * SEG) - ld8d(p0)); w1 = w1 + (ld8d(p1 + 7 * SEG) - ld8d(p1));
        w2 = w2 + (ld8d(p2 + 7 * SEG) - ld8d(p2)); w3 = w3 + (ld8d(p3 + 7 * SEG) - ld8d(p3));
    }
    if (Q > 0) { st8f(u + (Q - 1) * SEG, w0); st8f(u + (2 * Q - 1) * SEG, w1); st8f(u + (3 * Q - 1) * SEG, w2); }
    /* chain 3 goes on to the end of the row (w3 holds the window sum of output t) */
    for (int64_t t = Q > 0 ? 4 * Q - 1 : 0; t < L; t++) {
        st8f(u + t * SEG, w3);
        if (t + 1 < L) w3 = w3 + (ld8d(v + (t + 7) * SEG) - ld8d(v + t * SEG));
    }
}

#define ALIGN64(n) (((size_t)(n) + 63) & ~(size_t)63)

/* row geometry of the SSIM pass for rows of w pixels: L columns per segment, wp entries per
   permuted row (L + 6 per segment), no outputs per row, wr the permuted row stride (whole 8x8
   blocks, as permute_row writes them) */
typedef struct { int64_t L, wp, no, wr; } ssim_geom_t;

static ssim_geom_t ssim_geom(int64_t w) {
    ssim_geom_t g;
    g.L = (w - 6 + SEG - 1) / SEG;
    g.wp = (g.L + 6) * SEG;
    g.no = g.L * SEG;
    g.wr = (g.L + 6 + 7) / 8 * 8 * SEG;
    return g;
}

/* bytes of work space ssim_image needs for rows of w pixels (64-byte aligned regions, as carved there) */
static size_t ssim_work_bytes(int64_t w) {
    ssim_geom_t g = ssim_geom(w);
    return 64 + ALIGN64(3 * 8 * g.wr) + ALIGN64(sizeof(int32_t) * NQ * g.wp) + ALIGN64(sizeof(double) * g.wp)
           + ALIGN64(sizeof(float) * NQ * g.no) + ALIGN64(sizeof(double) * 2 * g.no);
}

static void ssim_image(const uint8_t *X, const uint8_t *Y1, const uint8_t *Y2, int64_t h, int64_t w,
                       float cn, float c1, float c2, double *res /* 2 */, void *work) {
    const int K = 7;
    const ssim_geom_t g = ssim_geom(w);
    const int64_t wo = w - K + 1, ho = h - K + 1, L = g.L, wp = g.wp, no = g.no, wr = g.wr;
    char *p = (char *)(((uintptr_t)work + 63) & ~(uintptr_t)63);
    uint8_t *ring = (uint8_t *)p;  p += ALIGN64(3 * 8 * wr);  /* permuted rows: image i, row rr in slot rr % 8 */
    int32_t *cs = (int32_t *)p;    p += ALIGN64(sizeof(int32_t) * NQ * wp);  /* column sums of the 8 quantities */
    double *vd = (double *)p;      p += ALIGN64(sizeof(double) * wp);        /* first-pass means */
    float *uf = (float *)p;        p += ALIGN64(sizeof(float) * NQ * no);    /* second-pass means */
    double *acc = (double *)p;                                               /* per-column sums of the 2 SSIM maps */
    const uint8_t *img[3] = {X, Y1, Y2};
    memset(cs, 0, sizeof(int32_t) * NQ * wp);
    memset(acc, 0, sizeof(double) * 2 * no);
#define RING(i, rr) (ring + ((i) * 8 + ((rr) & 7)) * wr)
    for (int64_t r = 0; r < ho; r++) {
        /* slide the vertical window (exact integers): add row r+6, remove row r-1 */
        for (int64_t rr = (r == 0 ? 0 : r + K - 1); rr <= r + K - 1; rr++) {
            for (int i = 0; i < 3; i++) permute_row(img[i] + rr * w, L, RING(i, rr));
            colsum_update(cs, wp, RING(0, rr), RING(1, rr), RING(2, rr),
                          r == 0 ? NULL : RING(0, r - 1), RING(1, r - 1), RING(2, r - 1));
        }
        /* per quantity, with the row buffers in L1: first pass float32(sum / 7.0), then the
           second pass float32(window sum / 7.0) */
        for (int q = 0; q < NQ; q++) {
            first_pass(cs + q * wp, wp, vd);
            slide_pass(vd, L, uf + q * no);
        }
        /* the two SSIM maps, float32 as numpy computes them (on the padding too: finite, never summed) */
        ssim_rows(uf, no, cn, c1, c2, acc);
    }
#undef RING
    double s1 = 0, s2 = 0;
    for (int k = 0; k < SEG; k++)
        for (int64_t t = 0; t < L && k * L + t < wo; t++) { s1 += acc[t * SEG + k]; s2 += acc[no + t * SEG + k]; }
    double cnt = (double)ho * (double)wo;
    res[0] = s1 / cnt;
    res[1] = s2 / cnt;
}

/* ---------------------------------------------------------------------------------------
 * global statistics: histograms, exact integer moments, SF, AG
 * ------------------------------------------------------------------------------------- */
typedef struct {
    int64_t sf, sa, sb, sff, saa, sbb, sfa, sfb, sab, maxf, dx2, dy2;
    double ag;
    int64_t hist[256];
} moments_t;

/* AG terms sqrt(q / 8) of one row, q = gx'^2 + gy'^2 an integer below 2^20 (gx', gy' the unhalved
   differences; cy = 4 on the first and last row, whose vertical difference is one-sided), summed
   per column in double. f32: the square roots in float32, correctly rounded (q / 8 is exact in
   float32), as a float32 evaluation computes them: a relative error below 6e-8 per term, about
   four times faster than double square roots; otherwise in double. */
#define AG_ROW(NAME, SQRT, T)                                                                          \
__attribute__((noinline)) static void NAME(const uint8_t *restrict f, const uint8_t *restrict fu,     \
                                           const uint8_t *restrict fd, int32_t cy, int64_t w,         \
                                           double *restrict agcol) {                                  \
    {                                                                                                 \
        int32_t dx = (int32_t)f[1] - f[0], dy = (int32_t)fd[0] - fu[0];                              \
        agcol[0] += (double)SQRT((T)(4 * dx * dx + cy * dy * dy) / (T)8);                             \
        dx = (int32_t)f[w - 1] - f[w - 2]; dy = (int32_t)fd[w - 1] - fu[w - 1];                      \
        agcol[w - 1] += (double)SQRT((T)(4 * dx * dx + cy * dy * dy) / (T)8);                         \
    }                                                                                                 \
    for (int64_t j = 1; j + 1 < w; j++) {                                                             \
        int32_t dx = (int32_t)f[j + 1] - f[j - 1], dy = (int32_t)fd[j] - fu[j];                      \
        agcol[j] += (double)SQRT((T)(dx * dx + cy * dy * dy) / (T)8);                                 \
    }                                                                                                 \
}
AG_ROW(ag_row64, sqrt, double)
AG_ROW(ag_row32, sqrtf, float)
#undef AG_ROW

__attribute__((noinline)) static void row_sums32(const uint8_t *restrict f, const uint8_t *restrict a,
                                                 const uint8_t *restrict b, int64_t w, int32_t *t) {
    int32_t sf = 0, sa = 0, sb = 0, sff = 0, saa = 0, sbb = 0, sfa = 0, sfb = 0, sab = 0;
    for (int64_t j = 0; j < w; j++) {
        int32_t fv = f[j], av = a[j], bv = b[j];
        sf += fv; sa += av; sb += bv;
        sff += fv * fv; saa += av * av; sbb += bv * bv;
        sfa += fv * av; sfb += fv * bv; sab += av * bv;
    }
    t[0] = sf; t[1] = sa; t[2] = sb; t[3] = sff; t[4] = saa; t[5] = sbb; t[6] = sfa; t[7] = sfb; t[8] = sab;
}

static void moments_image(const uint8_t *F, const uint8_t *A, const uint8_t *B, int64_t h, int64_t w,
                          moments_t *m, int32_t *jfa, int32_t *jfb, double *agcol, int ag_f32) {
    memset(m, 0, sizeof(*m));
    for (int64_t j = 0; j < w; j++) agcol[j] = 0;
    int64_t h4[4][256];
    memset(h4, 0, sizeof(h4));
    int64_t hw = h * w;
    int64_t i = 0;
    for (; i + 4 <= hw; i += 4) {
        h4[0][F[i]]++; h4[1][F[i + 1]]++; h4[2][F[i + 2]]++; h4[3][F[i + 3]]++;
    }
    for (; i < hw; i++) h4[0][F[i]]++;
    for (int k = 0; k < 256; k++) m->hist[k] = h4[0][k] + h4[1][k] + h4[2][k] + h4[3][k];
    if (jfa) {
        for (i = 0; i < hw; i++) { jfa[(F[i] << 8) | A[i]]++; jfb[(F[i] << 8) | B[i]]++; }
    }
    int64_t maxf = 0;
    for (int k = 255; k >= 0; k--) if (m->hist[k]) { maxf = k; break; }
    m->maxf = maxf;
    for (int64_t r = 0; r < h; r++) {
        const uint8_t *f = F + r * w, *a = A + r * w, *b = B + r * w;
        int64_t sf, sa, sb, sff, saa, sbb, sfa, sfb, sab, dx2 = 0, dy2 = 0;
        if (w <= 33000) {  /* a row's sums fit int32 (w * 255^2 < 2^31): 16 lanes instead of 8 */
            int32_t t[9];
            row_sums32(f, a, b, w, t);
            sf = t[0]; sa = t[1]; sb = t[2]; sff = t[3]; saa = t[4]; sbb = t[5]; sfa = t[6]; sfb = t[7]; sab = t[8];
            int32_t d2 = 0;
            for (int64_t j = 0; j + 1 < w; j++) { int32_t d = (int32_t)f[j + 1] - f[j]; d2 += d * d; }
            dx2 = d2;
            if (r + 1 < h) {
                const uint8_t *fn = f + w;
                d2 = 0;
                for (int64_t j = 0; j < w; j++) { int32_t d = (int32_t)fn[j] - f[j]; d2 += d * d; }
                dy2 = d2;
            }
        } else {
            sf = sa = sb = sff = saa = sbb = sfa = sfb = sab = 0;
            for (int64_t j = 0; j < w; j++) {
                int64_t fv = f[j], av = a[j], bv = b[j];
                sf += fv; sa += av; sb += bv;
                sff += fv * fv; saa += av * av; sbb += bv * bv;
                sfa += fv * av; sfb += fv * bv; sab += av * bv;
            }
            for (int64_t j = 0; j + 1 < w; j++) { int64_t d = (int64_t)f[j + 1] - f[j]; dx2 += d * d; }
            if (r + 1 < h) {
                const uint8_t *fn = f + w;
                for (int64_t j = 0; j < w; j++) { int64_t d = (int64_t)fn[j] - f[j]; dy2 += d * d; }
            }
        }
        /* AG: numpy.gradient (central inside, one-sided on the borders), per pixel
           sqrt((gx^2 + gy^2) / 2) = sqrt(q / 8) with q integer, in double; summed per column */
        (ag_f32 ? ag_row32 : ag_row64)(f, r > 0 ? f - w : f, r + 1 < h ? f + w : f, (r > 0 && r + 1 < h) ? 1 : 4,
                                       w, agcol);
        m->sf += sf; m->sa += sa; m->sb += sb; m->sff += sff; m->saa += saa; m->sbb += sbb;
        m->sfa += sfa; m->sfb += sfb; m->sab += sab; m->dx2 += dx2; m->dy2 += dy2;
    }
    double ag = 0;
    for (int64_t j = 0; j < w; j++) ag += agcol[j];
    m->ag = ag;
}

/* N^2 * covariance, exactly (then rounded once to double) */
static inline double ncov(int64_t n, int64_t sxy, int64_t sx, int64_t sy) {
    __int128 v = (__int128)n * sxy - (__int128)sx * sy;
    return (double)v;
}

static inline double corr_from(double cxy, double cxx, double cyy) {
    double den = sqrt(cxx * cyy);  /* both >= 0: exact integer variances */
    return den != 0 ? cxy / den : 0.0;
}

/* sum over counts of c * ln c */
static double clogc_sum(const int32_t *c, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) if (c[i] > 1) s += (double)c[i] * log((double)c[i]);
    return s;
}

static double clogc_sum64(const int64_t *c, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) if (c[i] > 1) s += (double)c[i] * log((double)c[i]);
    return s;
}

/* mutual information (nats) of F with a source from their joint histogram */
static double mi_from_joint(const int32_t *j, const int64_t *hf, int64_t total) {
    int64_t hs[256];
    memset(hs, 0, sizeof(hs));
    for (int f = 0; f < 256; f++) {
        const int32_t *row = j + (f << 8);
        for (int s = 0; s < 256; s++) hs[s] += row[s];
    }
    double n = (double)total, ln = log(n);
    double hx = ln - clogc_sum64(hf, 256) / n, hy = ln - clogc_sum64(hs, 256) / n;
    double hxy = ln - clogc_sum(j, 65536) / n;
    double mi = hx + hy - hxy;
    return (mi > 0 ? mi : 0.0) + 0.0;
}


/* ---------------------------------------------------------------------------------------
 * VIFp (pixel domain, Sheikh & Bovik) as in the CDDFuse evaluator, statistics in double.
 * Two references (A, B) share the distorted image F. Separable 'valid' Gaussian filtering,
 * horizontal pass then vertical (as functional._sep_valid), streamed through a ring of the
 * last k horizontally filtered rows. The sums of log(1 + x) are taken as the log of running
 * products (mantissa and exponent kept apart, so they never overflow): one log per column
 * and scale instead of one per pixel.
 * ------------------------------------------------------------------------------------- */
typedef struct { const uint8_t *u8; const double *d; double off; int64_t w; } src_t;

static inline void load_row(const src_t *s, int64_t r, double *restrict dst) {
    if (s->u8) {
        const uint8_t *restrict p = s->u8 + r * s->w;
        for (int64_t j = 0; j < s->w; j++) dst[j] = (double)p[j] - s->off;
    } else {
        memcpy(dst, s->d + r * s->w, sizeof(double) * (size_t)s->w);
    }
}

/* 1-D 'valid' filters with the window length K fixed at compile time, so that the tap loop
   is unrolled and the column loop vectorised with the accumulator in a register */
#define DEF_FILT(K)                                                                              \
    static void hfilt##K(const double *restrict in, int64_t wo, const double *restrict g,          \
                         double *restrict out) {                                                 \
        double gg[K];                                                                            \
        for (int t = 0; t < K; t++) gg[t] = g[t];                                                \
        for (int64_t j = 0; j < wo; j++) {                                                       \
            double acc = in[j] * gg[0];                                                          \
            for (int t = 1; t < K; t++) acc = fma(in[j + t], gg[t], acc);                        \
            out[j] = acc;                                                                        \
        }                                                                                        \
    }                                                                                            \
    static void vfilt##K(const double *const *rows, int64_t wo, const double *restrict g,        \
                         double *restrict out) {                                                 \
        double gg[K];                                                                            \
        const double *restrict p[K];                                                             \
        for (int t = 0; t < K; t++) { gg[t] = g[t]; p[t] = rows[t]; }                            \
        for (int64_t j = 0; j < wo; j++) {                                                       \
            double acc = p[0][j] * gg[0];                                                        \
            for (int t = 1; t < K; t++) acc = fma(p[t][j], gg[t], acc);                          \
            out[j] = acc;                                                                        \
        }                                                                                        \
    }
DEF_FILT(17)
DEF_FILT(9)
DEF_FILT(5)
DEF_FILT(3)

static void hfilt(const double *in, int64_t wo, const double *g, int k, double *out) {
    switch (k) {
        case 17: hfilt17(in, wo, g, out); break;
        case 9: hfilt9(in, wo, g, out); break;
        case 5: hfilt5(in, wo, g, out); break;
        default: hfilt3(in, wo, g, out); break;
    }
}

static void vfilt(const double *const *rows, int64_t wo, const double *g, int k, double *out) {
    switch (k) {
        case 17: vfilt17(rows, wo, g, out); break;
        case 9: vfilt9(rows, wo, g, out); break;
        case 5: vfilt5(rows, wo, g, out); break;
        default: vfilt3(rows, wo, g, out); break;
    }
}

/* 'valid' filtering with stride 2 on both axes: out (ho x wo), ho = (h-k)/2+1, wo = (w-k)/2+1 */
static void downsample(const src_t *src, int64_t h, int64_t w, const double *g, int k, double *out,
                       double *ring, double *rowbuf) {
    int64_t wv = w - k + 1, ho = (h - k) / 2 + 1, wo = (w - k) / 2 + 1, next = 0;
    for (int64_t r = 0; r < ho; r++) {
        while (next <= 2 * r + k - 1) {
            load_row(src, next, rowbuf);
            hfilt(rowbuf, wv, g, k, ring + (next % k) * wv);
            next++;
        }
        const double *rp[17];
        for (int t = 0; t < k; t++) rp[t] = ring + ((2 * r + t) % k) * wv;
        vfilt(rp, wv, g, k, rowbuf);
        double *restrict o = out + r * wo;
        for (int64_t j = 0; j < wo; j++) o[j] = rowbuf[2 * j];
    }
}

static inline void prod_norm(double *restrict p, int64_t *restrict e, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        uint64_t u;
        memcpy(&u, &p[j], 8);
        e[j] += (int64_t)(u >> 52) - 1023;
        u = (u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
        memcpy(&p[j], &u, 8);
    }
}

static double prod_log(const double *p, const int64_t *e, int64_t n) {
    double s = 0, es = 0;
    for (int64_t j = 0; j < n; j++) { s += log(p[j]); es += (double)e[j]; }
    return s + es * 0.69314718055994530942;
}

/* one row of VIF terms from the 8 filtered maps V (mu_a, mu_b, mu_f, aa, bb, ff, af, bf); multiplies
   the running products P (num_a, num_b, den_a, den_b) by 1 + term. The reference's masking reduces
   to: the information term counts where s1 >= eps, s2 >= eps and s12 > 0, with sv = max(s2 - g s12,
   eps); s1 < eps counts as 0 in the denominator. */
__attribute__((noinline)) static void vif_stats_row(const double *restrict V, double *restrict P, int64_t wo,
                                                    double eps, double sn) {
    for (int64_t j = 0; j < wo; j++) {
        double m2 = V[2 * wo + j];
        double s2 = V[5 * wo + j] - m2 * m2;
        s2 = s2 < 0 ? 0 : s2;
        for (int k = 0; k < 2; k++) {
            double m1 = V[k * wo + j];
            double s1 = V[(3 + k) * wo + j] - m1 * m1;
            s1 = s1 < 0 ? 0 : s1;
            double s12 = V[(6 + k) * wo + j] - m1 * m2;
            double gg = s12 / (s1 + eps);
            double sv = s2 - gg * s12;
            sv = (sv < eps ? eps : sv) + sn;
            double fnum = 1.0 + ((gg * gg) * s1) / sv;
            P[k * wo + j] *= (s1 >= eps && s2 >= eps && s12 > 0) ? fnum : 1.0;
            P[(2 + k) * wo + j] *= 1.0 + (s1 < eps ? 0.0 : s1) / sn;
        }
    }
}

__attribute__((noinline)) static void vif_products(int64_t w, const double *restrict xa, const double *restrict xb,
        const double *restrict xd, double *restrict paa, double *restrict pbb, double *restrict pdd,
        double *restrict pad, double *restrict pbd) {
    for (int64_t j = 0; j < w; j++) {
        paa[j] = xa[j] * xa[j]; pbb[j] = xb[j] * xb[j]; pdd[j] = xd[j] * xd[j];
        pad[j] = xa[j] * xd[j]; pbd[j] = xb[j] * xd[j];
    }
}

/* statistics of one scale; adds to num[2], den[2] */
static void vif_scale(const src_t *ra, const src_t *rb, const src_t *d, int64_t h, int64_t w, const double *g, int k,
                      double sn, double *num, double *den, double *work) {
    const double eps = 1e-10;
    int64_t ho = h - k + 1, wo = w - k + 1;
    double *ring = work;                       /* k * 8 * wo */
    double *V = ring + (int64_t)k * 8 * wo;    /* 8 * wo */
    double *rows = V + 8 * wo;                 /* 3 * w + 5 * w products */
    double *P = rows + 8 * w;                  /* 4 * wo running products */
    int64_t *E = (int64_t *)(P + 4 * wo);      /* 4 * wo exponents */
    for (int64_t j = 0; j < 4 * wo; j++) { P[j] = 1.0; E[j] = 0; }
    int64_t next = 0;
    for (int64_t r = 0; r < ho; r++) {
        while (next <= r + k - 1) {
            double *restrict xa = rows, *restrict xb = rows + w, *restrict xd = rows + 2 * w;
            load_row(ra, next, xa); load_row(rb, next, xb); load_row(d, next, xd);
            vif_products(w, xa, xb, xd, rows + 3 * w, rows + 4 * w, rows + 5 * w, rows + 6 * w, rows + 7 * w);
            double *slot = ring + (next % k) * 8 * wo;
            for (int q = 0; q < 8; q++) hfilt(rows + q * w, wo, g, k, slot + q * wo);
            next++;
        }
        for (int q = 0; q < 8; q++) {
            const double *rp[17];
            for (int t = 0; t < k; t++) rp[t] = ring + ((r + t) % k) * 8 * wo + q * wo;
            vfilt(rp, wo, g, k, V + q * wo);
        }
        vif_stats_row(V, P, wo, eps, sn);
        prod_norm(P, E, 4 * wo);
    }
    num[0] += prod_log(P, E, wo);
    num[1] += prod_log(P + wo, E + wo, wo);
    den[0] += prod_log(P + 2 * wo, E + 2 * wo, wo);
    den[1] += prod_log(P + 3 * wo, E + 3 * wo, wo);
}

/* taps: 4 windows (17, 9, 5, 3) concatenated, normalised 1-D MATLAB fspecial factors */
static void vif_image(const uint8_t *F, const uint8_t *A, const uint8_t *B, int64_t h, int64_t w, const double *taps,
                      double sn, double *res /* 2 */) {
    static const int sizes[4] = {17, 9, 5, 3};
    int64_t hw = h * w;
    double ma = 0, mb = 0, mf = 0;
    {
        int64_t sa = 0, sb = 0, sf = 0;
        for (int64_t i = 0; i < hw; i++) { sa += A[i]; sb += B[i]; sf += F[i]; }
        ma = (double)sa / (double)hw; mb = (double)sb / (double)hw; mf = (double)sf / (double)hw;
    }
    int64_t wmax = w;
    size_t nwork = (size_t)(17 * 8 * wmax + 8 * wmax + 8 * wmax + 8 * wmax + 64);
    double *work = (double *)malloc(sizeof(double) * nwork);
    /* the largest downsampled planes: scale 2, window 9 */
    int64_t h2 = (h >= 9 && w >= 9) ? (h - 9) / 2 + 1 : 0, w2 = (h >= 9 && w >= 9) ? (w - 9) / 2 + 1 : 0;
    double *planes = (double *)malloc(sizeof(double) * (size_t)(6 * (h2 * w2 + 1)));
    double num[2] = {0, 0}, den[2] = {0, 0};
    if (!work || !planes) { free(work); free(planes); res[0] = res[1] = NAN; return; }
    src_t sa = {A, NULL, ma, w}, sb = {B, NULL, mb, w}, sd = {F, NULL, mf, w};
    int64_t ch = h, cw = w;
    double *cur = planes, *nxt = planes + 3 * (h2 * w2 + 1);
    const double *g = taps;
    for (int s = 0; s < 4; s++) {
        int k = sizes[s];
        if (s > 0) {
            if (ch < k || cw < k) break;
            int64_t nh = (ch - k) / 2 + 1, nw = (cw - k) / 2 + 1;
            downsample(&sa, ch, cw, g, k, nxt, work, work + k * cw);
            downsample(&sb, ch, cw, g, k, nxt + nh * nw, work, work + k * cw);
            downsample(&sd, ch, cw, g, k, nxt + 2 * nh * nw, work, work + k * cw);
            ch = nh; cw = nw;
            sa = (src_t){NULL, nxt, 0, cw}; sb = (src_t){NULL, nxt + ch * cw, 0, cw};
            sd = (src_t){NULL, nxt + 2 * ch * cw, 0, cw};
            double *t = cur; cur = nxt; nxt = t;
        }
        if (ch < k || cw < k) break;
        vif_scale(&sa, &sb, &sd, ch, cw, g, k, sn, num, den, work);
        g += k;
    }
    for (int i = 0; i < 2; i++) res[i] = den[i] != 0 ? num[i] / den[i] : 1.0;
    free(work); free(planes);
}


/* ---------------------------------------------------------------------------------------
 * Qabf (Xydeas-Petrovic) in double: Sobel with zero padding on the integer luma, strength
 * sqrt(sx^2 + sy^2), orientation atan(sy/sx) (pi/2 where sx == 0), the strength ratio quirk
 * (g_F itself where g_S == g_F; compared on the exact integers sx^2 + sy^2). exp and atan are
 * evaluated inline (argument reduction + series, error < 1e-15) so the loops vectorise.
 * ------------------------------------------------------------------------------------- */
static inline double fb_exp(double x) {
    x = x < -700.0 ? -700.0 : (x > 700.0 ? 700.0 : x);  /* e^-700 ~ 1e-304: + 1 makes it 1 anyway */
    double kf = rint(x * 1.4426950408889634);
    double r = fma(-kf, 0.6931471805599453, x);
    r = fma(-kf, 2.3190468138462996e-17, r);
    /* Taylor series of e^r to degree 12, |r| <= 0.347 */
    double p = 1.0 / 479001600.0;
    p = fma(p, r, 1.0 / 39916800.0);
    p = fma(p, r, 1.0 / 3628800.0);
    p = fma(p, r, 1.0 / 362880.0);
    p = fma(p, r, 1.0 / 40320.0);
    p = fma(p, r, 1.0 / 5040.0);
    p = fma(p, r, 1.0 / 720.0);
    p = fma(p, r, 1.0 / 120.0);
    p = fma(p, r, 1.0 / 24.0);
    p = fma(p, r, 1.0 / 6.0);
    p = fma(p, r, 0.5);
    p = fma(p, r, 1.0);
    p = fma(p, r, 1.0);
    int64_t ki = (int64_t)kf;
    uint64_t u = (uint64_t)(ki + 1023) << 52;
    double sc;
    memcpy(&sc, &u, 8);
    return p * sc;
}

/* atan(sy / sx) for integers, sx != 0 (the caller handles sx == 0) */
static inline double fb_atan_ratio(double sy, double sx) {
    const double pi2 = 1.5707963267948966, pi4 = 0.7853981633974483, pi8 = 0.39269908169872414;
    const double t8 = 0.41421356237309503; /* tan(pi/8) */
    double p = fabs(sy), q = fabs(sx);
    int swap = p > q;
    double nu = swap ? q : p, de = swap ? p : q;   /* nu/de in [0, 1] */
    /* reduce to |u| <= tan(pi/16): atan(t) = atan(c) + atan((t - c) / (1 + t c)) */
    double c = nu <= 0.19891236737965800 * de ? 0.0 : (nu <= 0.66817863791929891 * de ? t8 : 1.0);
    double off = c == 0.0 ? 0.0 : (c == 1.0 ? pi4 : pi8);
    double u = (nu - c * de) / (de + c * nu);
    double z = u * u;
    double s = -1.0 / 23.0;
    s = fma(s, z, 1.0 / 21.0);
    s = fma(s, z, -1.0 / 19.0);
    s = fma(s, z, 1.0 / 17.0);
    s = fma(s, z, -1.0 / 15.0);
    s = fma(s, z, 1.0 / 13.0);
    s = fma(s, z, -1.0 / 11.0);
    s = fma(s, z, 1.0 / 9.0);
    s = fma(s, z, -1.0 / 7.0);
    s = fma(s, z, 1.0 / 5.0);
    s = fma(s, z, -1.0 / 3.0);
    s = fma(s, z, 1.0);
    double a = off + u * s;
    a = swap ? pi2 - a : a;
    return ((sy < 0) != (sx < 0)) ? -a : a;
}

/* Sobel responses of row i (zero padding); pad: 3 int32 rows of w + 2 */
static void sobel_row(const uint8_t *X, int64_t h, int64_t w, int64_t i, int32_t *restrict pad,
                      int32_t *restrict sx, int32_t *restrict sy) {
    int32_t *up = pad, *mid = pad + (w + 2), *dn = pad + 2 * (w + 2);
    for (int t = 0; t < 3; t++) {
        int32_t *row = pad + t * (w + 2);
        int64_t r = i - 1 + t;
        row[0] = 0; row[w + 1] = 0;
        if (r < 0 || r >= h) { for (int64_t j = 0; j < w; j++) row[j + 1] = 0; }
        else { const uint8_t *src = X + r * w; for (int64_t j = 0; j < w; j++) row[j + 1] = src[j]; }
    }
    for (int64_t j = 0; j < w; j++) {
        int32_t v0 = up[j] + 2 * mid[j] + dn[j], v2 = up[j + 2] + 2 * mid[j + 2] + dn[j + 2];
        int32_t d0 = up[j] - dn[j], d1 = up[j + 1] - dn[j + 1], d2 = up[j + 2] - dn[j + 2];
        sx[j] = v2 - v0;
        sy[j] = d0 + 2 * d1 + d2;
    }
}

__attribute__((noinline)) static void grad_angle_row(const int32_t *restrict sx, const int32_t *restrict sy, int64_t w,
                                                     double *restrict g, double *restrict ang, int32_t *restrict g2) {
    for (int64_t j = 0; j < w; j++) {
        int32_t m = sx[j] * sx[j] + sy[j] * sy[j];
        g2[j] = m;
        g[j] = sqrt((double)m);
        double a = fb_atan_ratio((double)sy[j], (double)sx[j]);
        ang[j] = sx[j] == 0 ? 1.5707963267948966 : a;
    }
}

__attribute__((noinline)) static void qabf_row(const double *restrict gs, const double *restrict as,
                                               const int32_t *restrict ms, const double *restrict gf,
                                               const double *restrict af, const int32_t *restrict mf, int64_t w,
                                               double *restrict accn, double *restrict accd) {
    const double tg = 0.9994, kg = -15.0, dg = 0.5, ta = 0.9879, ka = -22.0, da = 0.8;
    const double ca = -ka / 1.5707963267948966, cb = ka * (1 - da);
    for (int64_t j = 0; j < w; j++) {
        double lo = gs[j] < gf[j] ? gs[j] : gf[j], hi = gs[j] < gf[j] ? gf[j] : gs[j];
        double ratio = ms[j] == mf[j] ? gf[j] : lo / hi;
        double qg = fb_exp((ratio - dg) * kg) + 1.0;
        double qa = fb_exp(fabs(as[j] - af[j]) * ca + cb) + 1.0;
        double q = (tg * ta) / (qg * qa);
        accn[j] += q * gs[j];
        accd[j] += gs[j];
    }
}

static void qabf_image(const uint8_t *F, const uint8_t *A, const uint8_t *B, int64_t h, int64_t w, double *res) {
    size_t nw = (size_t)w;
    int32_t *ib = (int32_t *)malloc(sizeof(int32_t) * (3 * (nw + 2) + 9 * nw + 16));
    double *db = (double *)malloc(sizeof(double) * (8 * nw + 16));
    if (!ib || !db) { free(ib); free(db); *res = NAN; return; }
    int32_t *pad = ib, *sx = pad + 3 * (nw + 2), *sy = sx + nw, *m = sy + nw; /* m: 3 images */
    double *g = db, *ang = g + 3 * nw, *accn = ang + 3 * nw, *accd = accn + nw;
    for (size_t j = 0; j < 2 * nw; j++) accn[j] = 0;
    const uint8_t *img[3] = {A, B, F};
    for (int64_t i = 0; i < h; i++) {
        for (int t = 0; t < 3; t++) {
            sobel_row(img[t], h, w, i, pad, sx, sy);
            grad_angle_row(sx, sy, w, g + t * nw, ang + t * nw, m + t * nw);
        }
        qabf_row(g, ang, m, g + 2 * nw, ang + 2 * nw, m + 2 * nw, w, accn, accd);
        qabf_row(g + nw, ang + nw, m + nw, g + 2 * nw, ang + 2 * nw, m + 2 * nw, w, accn, accd);
    }
    double sn = 0, sd = 0;
    for (size_t j = 0; j < nw; j++) { sn += accn[j]; sd += accd[j]; }
    *res = sd != 0 ? sn / sd : 0.0;
    free(ib); free(db);
}

/* output slots per image */
enum { O_EN, O_SD, O_SF, O_AG, O_SCD, O_SSIM, O_MI, O_MSE, O_CC, O_PSNR, O_RMSE, O_VIF, O_QABF, NOUT };
/* FL_F32: the caller asked for float32 results (AG's square roots may then be float32) */
enum { FL_MOM = 1, FL_SSIM = 2, FL_MI = 4, FL_VIF = 8, FL_QABF = 16, FL_F32 = 32 };

int fb_cddfuse_core(int64_t n, int64_t h, int64_t w, const uint8_t *f, int cf, const uint8_t *a, int ca,
                    const uint8_t *b, int cb, int flags, float cn, float c1, float c2, const double *vif_taps,
                    double *out) {
    int64_t hw = h * w;
    if (h < 7 || w < 7) return -1;
    uint8_t *lum = (uint8_t *)malloc((size_t)(3 * hw) + 64);  /* slack: permute_row reads past a row */
    size_t nwork = ssim_work_bytes(w);
    if (nwork < sizeof(double) * (size_t)w) nwork = sizeof(double) * (size_t)w;  /* moments: per-column AG sums */
    void *work = malloc(nwork);
    int32_t *joint = (flags & FL_MI) ? (int32_t *)malloc(sizeof(int32_t) * 2 * 65536) : NULL;
    moments_t *m = (moments_t *)malloc(sizeof(moments_t));
    if (!lum || !work || !m || ((flags & FL_MI) && !joint)) { free(lum); free(work); free(joint); free(m); return -2; }
    for (int64_t i = 0; i < n; i++) {
        uint8_t *F = lum, *A = lum + hw, *B = lum + 2 * hw;
        luma_plane(f + i * (cf < 0 ? -cf : cf) * hw, cf, hw, F);
        luma_plane(a + i * (ca < 0 ? -ca : ca) * hw, ca, hw, A);
        luma_plane(b + i * (cb < 0 ? -cb : cb) * hw, cb, hw, B);
        double *o = out + i * NOUT;
        if (flags & (FL_MOM | FL_MI)) {
            if (joint) memset(joint, 0, sizeof(int32_t) * 2 * 65536);
            moments_image(F, A, B, h, w, m, joint, joint ? joint + 65536 : NULL, (double *)work, flags & FL_F32);
            double N = (double)hw;
            /* EN, bits */
            double en = 0;
            for (int k = 0; k < 256; k++) if (m->hist[k]) { double p = (double)m->hist[k] / N; en -= p * log2(p); }
            o[O_EN] = en + 0.0;
            double vff = ncov(hw, m->sff, m->sf, m->sf), vaa = ncov(hw, m->saa, m->sa, m->sa),
                   vbb = ncov(hw, m->sbb, m->sb, m->sb);
            double cfa = ncov(hw, m->sfa, m->sf, m->sa), cfb = ncov(hw, m->sfb, m->sf, m->sb),
                   cab = ncov(hw, m->sab, m->sa, m->sb);
            o[O_SD] = sqrt(vff) / N;
            o[O_SF] = sqrt((double)m->dx2 / (double)(h * (w - 1)) + (double)m->dy2 / (double)((h - 1) * w));
            o[O_AG] = m->ag / N;
            /* corr(A, F - B) + corr(B, F - A), from exact integer moments */
            {
                __int128 nn = hw;
                __int128 c_a_fb = (nn * (m->sfa - m->sab)) - (__int128)m->sa * (m->sf - m->sb);
                __int128 c_b_fa = (nn * (m->sfb - m->sab)) - (__int128)m->sb * (m->sf - m->sa);
                __int128 v_fb = nn * (m->sff - 2 * m->sfb + m->sbb) - (__int128)(m->sf - m->sb) * (m->sf - m->sb);
                __int128 v_fa = nn * (m->sff - 2 * m->sfa + m->saa) - (__int128)(m->sf - m->sa) * (m->sf - m->sa);
                o[O_SCD] = corr_from((double)c_a_fb, vaa, (double)v_fb) + corr_from((double)c_b_fa, vbb, (double)v_fa);
            }
            o[O_CC] = (corr_from(cfa, vaa, vff) + corr_from(cfb, vbb, vff)) / 2;
            int64_t ea = m->saa - 2 * m->sfa + m->sff, eb = m->sbb - 2 * m->sfb + m->sff;
            double mse = ((double)ea / N + (double)eb / N) / 2;
            o[O_MSE] = mse;
            o[O_RMSE] = sqrt(mse);
            double pk = (double)m->maxf;
            o[O_PSNR] = mse > 0 ? 10.0 * log10(pk * pk / mse) : INFINITY;
            if (joint) o[O_MI] = mi_from_joint(joint, m->hist, hw) + mi_from_joint(joint + 65536, m->hist, hw);
        }
        if (flags & FL_SSIM) {
            double s[2];
            ssim_image(F, A, B, h, w, cn, c1, c2, s, work);
            o[O_SSIM] = s[0] + s[1];
        }
        if (flags & FL_VIF) {
            double v[2];
            vif_image(F, A, B, h, w, vif_taps, 2.0, v);
            o[O_VIF] = v[0] + v[1];
        }
        if (flags & FL_QABF) qabf_image(F, A, B, h, w, &o[O_QABF]);
    }
    free(lum); free(work); free(joint); free(m);
    return 0;
}
"""
