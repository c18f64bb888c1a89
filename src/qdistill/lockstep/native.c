/* The forward and backward of a small nn.Sequential (Conv2d, MaxPool2d, ReLU, Dropout,
 * Linear) for R runs at once, each run with its own weights: the whole chain in one
 * call instead of ~25 PyTorch kernels and autograd nodes per step.
 *
 * Why: a batch-1 lockstep step of the paper-v1 front end is bound by per-op dispatch
 * and by small convolutions run one eager kernel at a time (native.py has the numbers).
 * Here one sample of one run goes through every layer while it sits in L1.
 *
 * Layout (what native.py passes; all float32, C-contiguous):
 *   x        (R*b, c, h, w)          run r's samples at rows r*b .. r*b+b-1
 *   conv     weight (R, oc, c, kh, kw), bias (R, oc); stride 1, no padding/dilation
 *   linear   weight (R, in, out) (stored transposed, as the twin stores it), bias (R, out)
 *   pool     kernel (kh, kw), stride (sh, sw), no padding; index = argmax in the plane,
 *            the first maximum of a window in row-major order, NaN wins (as PyTorch)
 *   dropout  noise (R*b, c) per channel (Dropout2d) or (R*b, c*h*w), already scaled
 *   acts     every layer's output, layer l's at act + off[l] * (R*b), (R*b, size[l])
 * Gradients are written (not accumulated): conv/linear weight and bias per run.
 *
 * Numbers differ from PyTorch's kernels only by float rounding (another summation
 * order); the backward skips zero output gradients (after max pooling 3 in 4 are zero),
 * so an inf or NaN input meeting a zero gradient gives 0 here, NaN in PyTorch; the run
 * is stopped on its non-finite loss either way.
 */
#include <stdint.h>
#include <string.h>

enum { CONV = 0, POOL = 1, RELU = 2, DROPOUT = 3, LINEAR = 4 };

typedef struct {
    int64_t kind;
    int64_t c, h, w;          /* input: channels, height, width (linear: c = in, h = w = 1) */
    int64_t oc, oh, ow;       /* output */
    int64_t kh, kw, sh, sw;   /* conv kernel / pool window and stride */
    int64_t in_size, out_size;    /* per sample */
    int64_t act_off;          /* output at acts + act_off * n_rows */
    int64_t idx_off;          /* pool argmax at index + idx_off * n_rows */
    int64_t channelwise;      /* dropout: one noise value per channel */
    float *weight, *bias;     /* stacked over runs */
    float *gweight, *gbias;
    float *noise;             /* dropout noise (R*b, ...) or NULL */
} Layer;

static void axpy(float *restrict y, float a, const float *restrict x, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* Rows of a few floats (a kernel row: 5 in paper-v1; im2col makes thousands per
 * sample): a fixed-length copy for each short length, so the compiler emits a couple
 * of moves instead of a loop or a memcpy call (3x faster here). */
#define SHORT(N, OP) case N: for (int i = 0; i < N; i++) OP; return;
#define SHORTS(OP) SHORT(1, OP) SHORT(2, OP) SHORT(3, OP) SHORT(4, OP) SHORT(5, OP) \
    SHORT(6, OP) SHORT(7, OP) SHORT(8, OP)

static inline void copy_row(float *restrict d, const float *restrict s, int64_t n) {
    switch (n) { SHORTS(d[i] = s[i]) default: for (int64_t i = 0; i < n; i++) d[i] = s[i]; }
}

static inline void add_row(float *restrict d, const float *restrict s, int64_t n) {
    switch (n) { SHORTS(d[i] += s[i]) default: for (int64_t i = 0; i < n; i++) d[i] += s[i]; }
}

/* The widest vector the target has (-march=native): 16 floats with AVX-512, 8 with
 * AVX, 4 elsewhere (SSE, NEON). GCC/Clang vector extensions; wider than the hardware,
 * GCC splits them badly (64-byte vectors on AVX2 ran the forward 8x slower). */
#if defined(__AVX512F__)
#define VW 16
#elif defined(__AVX__)
#define VW 8
#else
#define VW 4
#endif
typedef float vf __attribute__((vector_size(VW * sizeof(float))));

static inline vf loadv(const float *p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* out (M, P) = bias + W (M, K) cols (K, P), in tiles of 2 rows x 4 vectors of outputs:
 * 8 independent accumulators in registers over the whole k loop. With one row x 2
 * vectors the loop waited on the adds' latency and ran 2x slower; as a float array GCC
 * kept the accumulators on the stack (3x slower). */
#define TILE (4 * VW)
static inline __attribute__((always_inline)) void tile(
        const float *restrict w, int64_t rows, const float *restrict bias,
        const float *restrict cols, float *restrict out, int64_t K, int64_t P, int64_t p0) {
    vf a[2][4];
    for (int r = 0; r < 2; r++)
        for (int v = 0; v < 4; v++) a[r][v] = (bias ? bias[r < rows ? r : 0] : 0.0f) - (vf){0};
    for (int64_t k = 0; k < K; k++) {
        const float *c = cols + k * P + p0;
        vf c0 = loadv(c), c1 = loadv(c + VW), c2 = loadv(c + 2 * VW), c3 = loadv(c + 3 * VW);
        float w0 = w[k], w1 = w[(rows > 1) * K + k];
        a[0][0] += w0 * c0; a[0][1] += w0 * c1; a[0][2] += w0 * c2; a[0][3] += w0 * c3;
        a[1][0] += w1 * c0; a[1][1] += w1 * c1; a[1][2] += w1 * c2; a[1][3] += w1 * c3;
    }
    for (int r = 0; r < rows; r++)
        for (int v = 0; v < 4; v++) memcpy(out + r * P + p0 + VW * v, &a[r][v], sizeof(vf));
}

static void gemm_bias(const float *restrict W, const float *restrict bias,
                      const float *restrict cols, float *restrict out, int64_t M, int64_t K,
                      int64_t P) {
    int64_t tiled = P - P % TILE;
    for (int64_t m = 0; m < M; m += 2) {
        int64_t rows = M - m < 2 ? M - m : 2;
        for (int64_t p0 = 0; p0 < tiled; p0 += TILE)
            tile(W + m * K, rows, bias ? bias + m : NULL, cols, out + m * P, K, P, p0);
        for (int64_t r = m; r < m + rows && tiled < P; r++) {  /* the last P % TILE */
            float *o = out + r * P + tiled;
            for (int64_t p = 0; p < P - tiled; p++) o[p] = bias ? bias[r] : 0.0f;
            for (int64_t k = 0; k < K; k++) axpy(o, W[r * K + k], cols + k * P + tiled, P - tiled);
        }
    }
}

/* C (M, N) = A (M, P) B (N, P)^T, every dot product of a row of A with a row of B: 2 x 4
 * of them at a time in 8 vector accumulators, then the lanes and the last P % VW terms
 * summed in a fixed order. */
static void gemm_nt(const float *restrict A, const float *restrict B, float *restrict C,
                    int64_t M, int64_t N, int64_t P) {
    int64_t Pv = P - P % VW;
    for (int64_t m = 0; m < M; m += 2)
        for (int64_t n = 0; n < N; n += 4) {
            const float *a[2], *b[4];
            for (int i = 0; i < 2; i++) a[i] = A + (m + i < M ? m + i : m) * P;
            for (int j = 0; j < 4; j++) b[j] = B + (n + j < N ? n + j : n) * P;
            vf acc[2][4];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = (vf){0};
            for (int64_t p = 0; p < Pv; p += VW) {
                vf x0 = loadv(a[0] + p), x1 = loadv(a[1] + p);
                for (int j = 0; j < 4; j++) {
                    vf y = loadv(b[j] + p);
                    acc[0][j] += x0 * y;
                    acc[1][j] += x1 * y;
                }
            }
            for (int i = 0; i < 2 && m + i < M; i++)
                for (int j = 0; j < 4 && n + j < N; j++) {
                    float s = 0;
                    for (int l = 0; l < VW; l++) s += acc[i][j][l];
                    for (int64_t p = Pv; p < P; p++) s += a[i][p] * b[j][p];
                    C[(m + i) * N + n + j] = s;
                }
        }
}

/* Dot product in 16 fixed lanes (vectorised without -ffast-math; the order does not
 * depend on the CPU). */
static float dot(const float *restrict a, const float *restrict b, int64_t n) {
    float acc[16] = {0};
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0;
    for (int j = 0; j < 16; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* cols (K = c*kh*kw, P = oh*ow): row k = (ci, ky, kx), the inputs that weight meets. */
static void im2col(const Layer *L, const float *in, float *cols) {
    int64_t P = L->oh * L->ow;
    for (int64_t ci = 0; ci < L->c; ci++)
        for (int64_t ky = 0; ky < L->kh; ky++)
            for (int64_t kx = 0; kx < L->kw; kx++) {
                float *row = cols + ((ci * L->kh + ky) * L->kw + kx) * P;
                for (int64_t oy = 0; oy < L->oh; oy++)
                    copy_row(row + oy * L->ow, in + (ci * L->h + oy + ky) * L->w + kx, L->ow);
            }
}

/* colsT (P, K): row p = output position, the K inputs of its window. */
static void im2row(const Layer *L, const float *in, float *colsT) {
    int64_t K = L->c * L->kh * L->kw;
    for (int64_t oy = 0; oy < L->oh; oy++)
        for (int64_t ox = 0; ox < L->ow; ox++) {
            float *row = colsT + (oy * L->ow + ox) * K;
            for (int64_t ci = 0; ci < L->c; ci++)
                for (int64_t ky = 0; ky < L->kh; ky++)
                    copy_row(row + (ci * L->kh + ky) * L->kw,
                             in + (ci * L->h + oy + ky) * L->w + ox, L->kw);
        }
}

static void conv_forward(const Layer *L, int64_t r, const float *in, float *out, float *cols) {
    int64_t P = L->oh * L->ow, K = L->c * L->kh * L->kw;
    const float *W = L->weight + r * L->oc * K;
    im2col(L, in, cols);
    gemm_bias(W, L->bias ? L->bias + r * L->oc : NULL, cols, out, L->oc, K, P);
}

static void conv_backward(const Layer *L, int64_t r, const float *in, const float *g,
                          float *gin, float *colsT, float *dcolsT) {
    int64_t P = L->oh * L->ow, K = L->c * L->kh * L->kw;
    const float *W = L->weight + r * L->oc * K;
    float *gW = L->gweight + r * L->oc * K;
    if (!gin) {
        /* The first layer (no input gradient): the weight gradient as dense dot products
         * over all positions, g (oc, P) cols (K, P)^T; 2.5x faster here than an axpy of
         * K per nonzero gradient (K = 25 is too short for vectors). */
        im2col(L, in, colsT);
        gemm_nt(g, colsT, dcolsT, L->oc, K, P);
        add_row(gW, dcolsT, L->oc * K);
        if (L->gbias)
            for (int64_t co = 0; co < L->oc; co++) {
                float gb = 0;
                for (int64_t p = 0; p < P; p++) gb += g[co * P + p];
                L->gbias[r * L->oc + co] += gb;
            }
        return;
    }
    im2row(L, in, colsT);
    memset(dcolsT, 0, (size_t)(P * K) * sizeof(float));
    for (int64_t co = 0; co < L->oc; co++) {
        const float *gc = g + co * P;
        float gb = 0;
        for (int64_t p = 0; p < P; p++) {
            float v = gc[p];
            gb += v;
            if (v == 0.0f) continue;
            axpy(gW + co * K, v, colsT + p * K, K);
            axpy(dcolsT + p * K, v, W + co * K, K);
        }
        if (L->gbias) L->gbias[r * L->oc + co] += gb;
    }
    memset(gin, 0, (size_t)L->in_size * sizeof(float));
    for (int64_t oy = 0; oy < L->oh; oy++)
        for (int64_t ox = 0; ox < L->ow; ox++) {
            const float *row = dcolsT + (oy * L->ow + ox) * K;
            for (int64_t ci = 0; ci < L->c; ci++)
                for (int64_t ky = 0; ky < L->kh; ky++)
                    add_row(gin + (ci * L->h + oy + ky) * L->w + ox,
                            row + (ci * L->kh + ky) * L->kw, L->kw);
        }
}

/* Branch-free and vectorised over a row of windows: which element is the maximum is
 * data-dependent, and a branch per element mispredicted so often that pooling took a
 * third of the forward. Same result as the scalar scan (row-major, first maximum, NaN
 * wins). */
static void pool_forward(const Layer *L, const float *in, float *out, int32_t *idx) {
    for (int64_t c = 0; c < L->c; c++) {
        const float *plane = in + c * L->h * L->w;
        for (int64_t oy = 0; oy < L->oh; oy++) {
            int64_t y0 = oy * L->sh, o0 = (c * L->oh + oy) * L->ow;
            float *restrict o = out + o0;
            int32_t *restrict id = idx + o0;
            for (int64_t ox = 0; ox < L->ow; ox++) {
                o[ox] = plane[y0 * L->w + ox * L->sw];
                id[ox] = (int32_t)(y0 * L->w + ox * L->sw);
            }
            for (int64_t i = 0; i < L->kh; i++)
                for (int64_t j = 0; j < L->kw; j++) {
                    if (!i && !j) continue;
                    int64_t row = (y0 + i) * L->w + j;
                    for (int64_t ox = 0; ox < L->ow; ox++) {
                        float v = plane[row + ox * L->sw];
                        int take = (v > o[ox]) | (v != v);
                        o[ox] = take ? v : o[ox];
                        id[ox] = take ? (int32_t)(row + ox * L->sw) : id[ox];
                    }
                }
        }
    }
}

static void linear_forward(const Layer *L, int64_t r, const float *in, float *out) {
    const float *Wt = L->weight + r * L->c * L->oc;
    if (L->bias) memcpy(out, L->bias + r * L->oc, (size_t)L->oc * sizeof(float));
    else memset(out, 0, (size_t)L->oc * sizeof(float));
    for (int64_t i = 0; i < L->c; i++) axpy(out, in[i], Wt + i * L->oc, L->oc);
}

static void linear_backward(const Layer *L, int64_t r, const float *in, const float *g,
                            float *gin) {
    const float *Wt = L->weight + r * L->c * L->oc;
    float *gWt = L->gweight + r * L->c * L->oc;
    for (int64_t i = 0; i < L->c; i++) {
        if (in[i] != 0.0f) axpy(gWt + i * L->oc, in[i], g, L->oc);
        if (gin) gin[i] = dot(Wt + i * L->oc, g, L->oc);
    }
    if (L->gbias) axpy(L->gbias + r * L->oc, 1.0f, g, L->oc);
}

/* out = in * noise (the backward: the same with gradients) */
static void dropout(const Layer *L, int64_t row, const float *in, float *out) {
    if (L->channelwise) {
        const float *nz = L->noise + row * L->c;
        int64_t per = L->h * L->w;
        for (int64_t c = 0; c < L->c; c++)
            for (int64_t i = 0; i < per; i++) out[c * per + i] = in[c * per + i] * nz[c];
    } else {
        const float *nz = L->noise + row * L->in_size;
        for (int64_t i = 0; i < L->in_size; i++) out[i] = in[i] * nz[i];
    }
}

/* Every layer's output for rows [0, R*b); scratch: one half of the backward's (below). */
void qd_forward(const Layer *layers, int64_t n_layers, int64_t R, int64_t b, const float *x,
                float *acts, int32_t *index, float *scratch) {
    int64_t rows = R * b;
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < b; s++) {
            int64_t row = r * b + s;
            const float *in = x + row * layers[0].in_size;
            for (int64_t l = 0; l < n_layers; l++) {
                const Layer *L = &layers[l];
                float *out = acts + L->act_off * rows + row * L->out_size;
                switch (L->kind) {
                case CONV: conv_forward(L, r, in, out, scratch); break;
                case POOL:
                    pool_forward(L, in, out, index + L->idx_off * rows + row * L->out_size);
                    break;
                case RELU:
                    for (int64_t i = 0; i < L->out_size; i++)
                        out[i] = in[i] < 0.0f ? 0.0f : in[i];  /* NaN stays NaN */
                    break;
                case DROPOUT: dropout(L, row, in, out); break;
                case LINEAR: linear_forward(L, r, in, out); break;
                }
                in = out;
            }
        }
}

/* Gradients of every weight and bias (written), and of x where gx is not NULL.
 * gout (R*b, last out_size); scratch: two halves of scratch_half floats, each at least
 * c*kh*kw * max(oh*ow, oc) of every conv; g0, g1: the largest per-sample activation each. */
void qd_backward(const Layer *layers, int64_t n_layers, int64_t R, int64_t b,
                 const float *x, const float *acts, const int32_t *index, const float *gout,
                 float *gx, float *scratch, int64_t scratch_half, float *g0, float *g1) {
    int64_t rows = R * b;
    for (int64_t l = 0; l < n_layers; l++) {
        const Layer *L = &layers[l];
        int64_t nw = L->kind == CONV ? L->oc * L->c * L->kh * L->kw : L->c * L->oc;
        if (L->gweight) memset(L->gweight, 0, (size_t)(R * nw) * sizeof(float));
        if (L->gbias) memset(L->gbias, 0, (size_t)(R * L->oc) * sizeof(float));
    }
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < b; s++) {
            int64_t row = r * b + s;
            const Layer *last = &layers[n_layers - 1];
            float *g = g0, *spare = g1;
            memcpy(g, gout + row * last->out_size, (size_t)last->out_size * sizeof(float));
            for (int64_t l = n_layers - 1; l >= 0; l--) {
                const Layer *L = &layers[l];
                const float *in = l ? acts + layers[l - 1].act_off * rows
                                      + row * layers[l - 1].out_size
                                    : x + row * L->in_size;
                const float *out = acts + L->act_off * rows + row * L->out_size;
                float *gin = l ? spare : (gx ? gx + row * L->in_size : NULL);
                switch (L->kind) {
                case CONV:
                    conv_backward(L, r, in, g, gin, scratch, scratch + scratch_half);
                    break;
                case POOL: {
                    const int32_t *idx = index + L->idx_off * rows + row * L->out_size;
                    if (!gin) break;
                    memset(gin, 0, (size_t)L->in_size * sizeof(float));
                    int64_t plane_in = L->h * L->w, plane_out = L->oh * L->ow;
                    for (int64_t c = 0; c < L->c; c++)
                        for (int64_t o = 0; o < plane_out; o++)
                            gin[c * plane_in + idx[c * plane_out + o]] += g[c * plane_out + o];
                    break;
                }
                case RELU:
                    if (gin)
                        for (int64_t i = 0; i < L->out_size; i++)
                            gin[i] = out[i] > 0.0f ? g[i] : 0.0f;
                    break;
                case DROPOUT:
                    if (gin) dropout(L, row, g, gin);
                    break;
                case LINEAR: linear_backward(L, r, in, g, gin); break;
                }
                if (!gin) break;  /* the first layer: nothing below needs a gradient */
                spare = g;
                g = gin;
                if (l == 0) break;
            }
        }
}
