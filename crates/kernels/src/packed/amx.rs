//! bf16 x bf16 → f32 products on AMX tiles (`Format::Bf16Amx`): the wide-batch products of bf16
//! plans (the hoisted input projection over T·B rows, the decoder) on CPUs with AMX-BF16.
//!
//! Why: at H = 1500 the hoisted projection of a bf16 plan took ~25% of its kernel time, at the
//! AVX-512 panel kernel's 80–116 GFLOP/s per core (`kernel_rates -- 1500`); an AVX512-BF16
//! `vdpbf16ps` panel kernel measured slower still (64–77), as this CPU issues it no faster than
//! two FMAs. One `tdpbf16ps` does 16 x 16 x 32 multiply-adds.
//!
//! Layout: 16-row panels of the weight, each cut into tiles of 32 columns: tile (p, c) is the
//! B operand `[16 column pairs][16 rows][2]` (bf16; the pair of row n's weights at columns
//! 32c + 2i and 32c + 2i + 1 side by side), zero-padded past the last row and column. x is rounded
//! to bf16 once per call (relative error ≤ 2⁻⁹ per input, like `Format::Bf16`'s weights), so
//! [`super::PackedMatrix::acc_reference`] rounds it the same way; accumulation is f32.
//!
//! Linux gives a thread AMX state only after `arch_prctl(ARCH_REQ_XCOMP_PERM, XTILEDATA)`;
//! [`available`] asks once and reports false if the CPU or the kernel says no. Tiles are
//! configured and released inside each call.

use super::dense::{bf16_to_f32, f32_to_bf16};
use super::{zeroed_lines, Lines, Operands};
use crate::isa::Isa;
use std::ops::Range;

/// Rows per panel (the C tile's columns).
pub(crate) const PANEL_ROWS: usize = 16;
/// Columns per tile (16 pairs).
const TILE_COLS: usize = 32;
/// bf16 values per B tile.
pub(crate) const TILE_VALUES: usize = PANEL_ROWS * TILE_COLS;

/// Whether this CPU and kernel can run the AMX kernel (whatever level the process runs at).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        tiles::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn chunks(k: usize) -> usize {
    k.div_ceil(TILE_COLS)
}

fn at(k: usize, r: usize, j: usize) -> usize {
    let (p, n) = (r / PANEL_ROWS, r % PANEL_ROWS);
    let (c, jj) = (j / TILE_COLS, j % TILE_COLS);
    (p * chunks(k) + c) * TILE_VALUES + ((jj / 2) * PANEL_ROWS + n) * 2 + jj % 2
}

/// Row-major f32 `[rows, k]` → bf16 tiles (rounded to nearest even; padding is zero).
pub(crate) fn pack(w: &[f32], rows: usize, k: usize) -> Lines<u16> {
    let mut out = zeroed_lines(rows.div_ceil(PANEL_ROWS) * chunks(k) * TILE_VALUES);
    for r in 0..rows {
        for j in 0..k {
            out[at(k, r, j)] = f32_to_bf16(w[r * k + j]);
        }
    }
    out
}

/// Weight (r, j) of a packed matrix with `k` columns, widened.
pub(crate) fn value(w: &[u16], k: usize, r: usize, j: usize) -> f32 {
    bf16_to_f32(w[at(k, r, j)])
}

/// `x` as the kernel sees it: rounded to bf16 (nearest even) and back.
pub(crate) fn round_input(v: f32) -> f32 {
    bf16_to_f32(f32_to_bf16(v))
}

/// `y[b * ldy + r] += W[r, :] · bf16(x[b * ldx ..])` for `r` in `rows` (`rows.start` a multiple
/// of 16).
///
/// # Safety
/// As `dense_acc`: `y` valid for the touched elements, no concurrent access to them; `w` packed
/// for `k` columns and at least `rows.end` rows; x holds `nb` rows of `ldx ≥ k`.
pub(crate) unsafe fn acc(level: Isa, w: &[u16], k: usize, o: Operands<'_>, rows: Range<usize>) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = level;
    #[cfg(target_arch = "x86_64")]
    if level == Isa::Amx && tiles::available() {
        // SAFETY: AMX present and permitted; forwarded contract.
        unsafe { tiles::acc(w, k, o, rows) };
        return;
    }
    // SAFETY: forwarded contract.
    unsafe { portable(w, k, o, rows) }
}

/// Without AMX (a lower level): x rounded as the tiles would, each 16-row panel widened to
/// row-major f32, then the gemm crate (the element-by-element loop ran at 1.4 GFLOP/s).
pub(crate) unsafe fn portable(w: &[u16], k: usize, o: Operands<'_>, rows: Range<usize>) {
    let Operands { x, ldx, nb, y, ldy } = o;
    let xr: Vec<f32> = (0..nb)
        .flat_map(|b| x[b * ldx..b * ldx + k].iter().map(|&v| round_input(v)))
        .collect();
    let mut panel = vec![0f32; PANEL_ROWS * k];
    let mut r0 = rows.start;
    while r0 < rows.end {
        let nr = (rows.end - r0).min(PANEL_ROWS);
        for (n, row) in panel.chunks_exact_mut(k.max(1)).take(nr).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = value(w, k, r0 + n, j);
            }
        }
        // SAFETY: xr holds nb rows of k, panel nr rows of k; y's rows r0..r0 + nr of every
        // batch row are the caller's (forwarded contract).
        unsafe {
            crate::gemm::matmul_acc_bt_serial(
                nb,
                nr,
                k,
                xr.as_ptr(),
                k,
                panel.as_ptr(),
                k,
                y.add(r0),
                ldy,
            )
        };
        r0 += nr;
    }
}

#[cfg(target_arch = "x86_64")]
mod tiles {
    use super::{chunks, f32_to_bf16, Operands, PANEL_ROWS, TILE_COLS, TILE_VALUES};
    use std::arch::asm;
    use std::cell::RefCell;
    use std::ops::Range;
    use std::sync::OnceLock;

    /// Panels whose C tiles share one loaded A tile (tmm0–3; A is tmm4, B tmm5).
    const GROUP: usize = 4;

    pub(super) fn available() -> bool {
        static OK: OnceLock<bool> = OnceLock::new();
        *OK.get_or_init(|| {
            // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 22 AMX-BF16 (std's detection of these is
            // not stable yet). The OS side is what `request_permission` asks.
            // SAFETY: CPUID leaf 7 exists on every x86-64 CPU this code runs on. (Safe to call
            // in newer Rust; `unsafe` kept for the minimum supported version.)
            #[allow(unused_unsafe)]
            let edx = unsafe { std::arch::x86_64::__cpuid_count(7, 0) }.edx;
            edx & (1 << 24) != 0 && edx & (1 << 22) != 0 && request_permission()
        })
    }

    /// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: Linux's opt-in to AMX state.
    fn request_permission() -> bool {
        if !cfg!(target_os = "linux") {
            return false;
        }
        let ret: i64;
        // SAFETY: a system call with integer arguments; it touches no memory of ours.
        unsafe {
            asm!("syscall", inlateout("rax") 158i64 => ret, in("rdi") 0x1023i64,
                 in("rsi") 18i64, lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// The tile configuration: palette 1, tiles 0–5 all 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct Config([u8; 64]);

    impl Config {
        fn new() -> Config {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..6 {
                c[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
                c[48 + t] = 16; // rows
            }
            Config(c)
        }
    }

    struct Scratch {
        /// x in bf16, rows padded to a multiple of 16, columns to a multiple of 32.
        xb: Vec<u16>,
        /// C tiles stored back: GROUP x 16 x 16 f32.
        c: Vec<f32>,
    }

    pub(super) unsafe fn acc(w: &[u16], k: usize, o: Operands<'_>, rows: Range<usize>) {
        let Operands { x, ldx, nb, y, ldy } = o;
        thread_local! {
            static SCRATCH: RefCell<Scratch> = const {
                RefCell::new(Scratch { xb: Vec::new(), c: Vec::new() })
            };
        }
        let ch = chunks(k);
        let kp = ch * TILE_COLS;
        let mb = nb.div_ceil(16);
        SCRATCH.with(|s| {
            let s = &mut *s.borrow_mut();
            s.xb.clear();
            s.xb.resize(mb * 16 * kp, 0);
            for b in 0..nb {
                for (d, &v) in s.xb[b * kp..b * kp + k]
                    .iter_mut()
                    .zip(&x[b * ldx..b * ldx + k])
                {
                    *d = f32_to_bf16(v);
                }
            }
            s.c.resize(GROUP * 256, 0.0);
            let cfg = Config::new();
            let (xs, cs) = (s.xb.as_ptr(), s.c.as_mut_ptr());
            // SAFETY (whole block): the tile loads read 16 rows of 64 bytes: A from xb (mb * 16
            // rows of kp values, so every block and chunk is inside), B from the packed panels
            // (each tile TILE_VALUES contiguous values, panels covering rows.end); stores go to
            // `c` (GROUP tiles of 1 KB). AMX state is configured here and released at the end.
            unsafe {
                asm!("ldtilecfg [{0}]", in(reg) cfg.0.as_ptr(), options(nostack));
                let first = rows.start / PANEL_ROWS;
                let last = rows.end.div_ceil(PANEL_ROWS);
                for m in 0..mb {
                    let mut p0 = first;
                    while p0 < last {
                        let g = (last - p0).min(GROUP);
                        for j in 0..g {
                            zero(j);
                        }
                        for c in 0..ch {
                            let a = xs.add(m * 16 * kp + c * TILE_COLS);
                            asm!("tileloadd tmm4, [{0} + {1}*1]", in(reg) a, in(reg) kp * 2,
                                 options(nostack, readonly));
                            for j in 0..g {
                                let b = w.as_ptr().add(((p0 + j) * ch + c) * TILE_VALUES);
                                asm!("tileloadd tmm5, [{0} + {1}*1]", in(reg) b, in(reg) 64usize,
                                     options(nostack, readonly));
                                dot(j);
                            }
                        }
                        for j in 0..g {
                            store(j, cs.add(j * 256));
                        }
                        // y += C, for the real batch rows and panel rows.
                        let bmax = (nb - m * 16).min(16);
                        for j in 0..g {
                            let r0 = (p0 + j) * PANEL_ROWS;
                            let rmax = (rows.end - r0).min(PANEL_ROWS);
                            for bb in 0..bmax {
                                let yp = y.add((m * 16 + bb) * ldy + r0);
                                let cp = cs.add(j * 256 + bb * 16);
                                for n in 0..rmax {
                                    *yp.add(n) += *cp.add(n);
                                }
                            }
                        }
                        p0 += g;
                    }
                }
                asm!("tilerelease", options(nostack));
            }
        });
    }

    // Tile registers are named in the instruction, so each index gets its own asm.
    unsafe fn zero(j: usize) {
        // SAFETY: tiles configured by the caller.
        unsafe {
            match j {
                0 => asm!("tilezero tmm0", options(nostack)),
                1 => asm!("tilezero tmm1", options(nostack)),
                2 => asm!("tilezero tmm2", options(nostack)),
                _ => asm!("tilezero tmm3", options(nostack)),
            }
        }
    }

    unsafe fn dot(j: usize) {
        // SAFETY: tiles configured by the caller; A in tmm4, B in tmm5.
        unsafe {
            match j {
                0 => asm!("tdpbf16ps tmm0, tmm4, tmm5", options(nostack)),
                1 => asm!("tdpbf16ps tmm1, tmm4, tmm5", options(nostack)),
                2 => asm!("tdpbf16ps tmm2, tmm4, tmm5", options(nostack)),
                _ => asm!("tdpbf16ps tmm3, tmm4, tmm5", options(nostack)),
            }
        }
    }

    unsafe fn store(j: usize, dst: *mut f32) {
        // SAFETY: dst holds 16 x 16 f32 (the caller's scratch).
        unsafe {
            match j {
                0 => {
                    asm!("tilestored [{0} + {1}*1], tmm0", in(reg) dst, in(reg) 64usize, options(nostack))
                }
                1 => {
                    asm!("tilestored [{0} + {1}*1], tmm1", in(reg) dst, in(reg) 64usize, options(nostack))
                }
                2 => {
                    asm!("tilestored [{0} + {1}*1], tmm2", in(reg) dst, in(reg) 64usize, options(nostack))
                }
                _ => {
                    asm!("tilestored [{0} + {1}*1], tmm3", in(reg) dst, in(reg) 64usize, options(nostack))
                }
            }
        }
    }
}
