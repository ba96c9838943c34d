//! `pow`, the one function of libm the daemon calls (tokio's scheduler
//! averages its task-poll times with `f64::powf`, prometheus-client's
//! bucket helper too), defined here from the `libm` crate (musl's `pow`,
//! ported to Rust) so that the linker needs no libm.so.6: mapping it for
//! this one function kept 0.5 MiB of its pages resident in the daemon
//! (BENCHMARKS.md, "Where the memory goes"). Nothing else here.

/// `double pow(double x, double y)`, as C's.
#[no_mangle]
pub extern "C" fn pow(x: f64, y: f64) -> f64 {
    libm::pow(x, y)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pow_is_c_s_pow() {
        assert_eq!(super::pow(2.0, 10.0), 1024.0);
        assert_eq!(super::pow(9.0, 0.5), 3.0);
        assert!((super::pow(0.9, 3.3) - 0.9f64.powf(3.3)).abs() < 1e-15);
        assert!(super::pow(-1.0, 0.5).is_nan());
    }
}
