//! `pgline-integration`: the seed's ten-point pool test (`cargo xtask integration`).

fn main() {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            std::process::exit(2);
        }
    };
    let failed = runtime.block_on(pgline_tests::integration::run());
    std::process::exit(i32::from(failed > 0));
}
