//! Compiles the C number helpers: long doubles for INCRBYFLOAT/HINCRBYFLOAT
//! (csrc/long_double.c) and doubles for sorted-set scores (csrc/double.c).
fn main() {
    println!("cargo:rerun-if-changed=csrc/long_double.c");
    println!("cargo:rerun-if-changed=csrc/double.c");
    cc::Build::new()
        .file("csrc/long_double.c")
        .file("csrc/double.c")
        .warnings(true)
        .compile("zankv_long_double");
}
