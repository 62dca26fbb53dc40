//! Which instruction set the convolution kernels run on, chosen once at run time.

use std::sync::OnceLock;

/// The instruction sets the convolution kernels are compiled for. One binary carries all
/// three; [`Isa::active`] picks the best the CPU has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F: 16 lanes.
    Avx512,
    /// AVX2 with FMA: 8 lanes.
    Avx2Fma,
    /// Plain Rust on arrays of 8: any CPU.
    Portable,
}

impl Isa {
    /// Every instruction set, best first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2Fma, Isa::Portable];

    /// Whether this CPU can run kernels compiled for `self`.
    pub fn available(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            Isa::Avx512 | Isa::Avx2Fma => false,
            Isa::Portable => true,
        }
    }

    /// The name `SHARDFEED_CPU_ISA` takes: `avx512`, `avx2` or `portable`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2Fma => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// The best instruction set this CPU has, or the one `SHARDFEED_CPU_ISA` names when the
    /// CPU has it (to measure, on one machine, what a CPU with less would do). Decided once.
    ///
    /// # Panics
    /// When `SHARDFEED_CPU_ISA` names an unknown set or one this CPU lacks.
    pub fn active() -> Isa {
        static ACTIVE: OnceLock<Isa> = OnceLock::new();
        *ACTIVE.get_or_init(|| {
            let best = Isa::ALL.into_iter().find(|isa| isa.available());
            let best = best.unwrap_or(Isa::Portable);
            match std::env::var("SHARDFEED_CPU_ISA") {
                Ok(name) => {
                    let isa = Isa::ALL.into_iter().find(|isa| isa.name() == name);
                    match isa {
                        Some(isa) if isa.available() => isa,
                        Some(_) => panic!("SHARDFEED_CPU_ISA={name}: this CPU lacks it"),
                        None => {
                            panic!("SHARDFEED_CPU_ISA={name}: not one of avx512, avx2, portable")
                        }
                    }
                }
                Err(_) => best,
            }
        })
    }
}
