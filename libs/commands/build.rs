//! Compiles the long-double helper used by INCRBYFLOAT/HINCRBYFLOAT (see csrc/long_double.c).
fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    cc::Build::new()
        .file("csrc/long_double.c")
        .warnings(true)
        .compile("zankv_long_double");
}
