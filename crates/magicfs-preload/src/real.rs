//! The C library's own functions, found with `dlsym(RTLD_NEXT, …)` once and
//! kept. Inside this library every call to the C library's file functions
//! goes through [`real!`]: calling `libc::close` directly would reach this
//! library's own `close`.

/// The next definition of C function `name` with the given signature, as
/// `Option<unsafe extern "C" fn(..) -> ..>` (`None` when the C library has none).
#[macro_export]
macro_rules! real {
    ($name:ident: fn($($t:ty),* $(,)?) -> $r:ty) => {{
        static PTR: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let mut p = PTR.load(std::sync::atomic::Ordering::Relaxed);
        if p == 0 {
            // SAFETY: a NUL-terminated name; dlsym has no other requirement.
            p = unsafe { libc::dlsym(libc::RTLD_NEXT, concat!(stringify!($name), "\0").as_ptr().cast()) } as usize;
            PTR.store(p, std::sync::atomic::Ordering::Relaxed);
        }
        if p == 0 {
            None
        } else {
            // SAFETY: the symbol named `$name` has this C signature.
            Some(unsafe { std::mem::transmute::<usize, unsafe extern "C" fn($($t),*) -> $r>(p) })
        }
    }};
}

/// Calls the C library's `name(args)`; `ENOSYS` and `$fail` when it has none.
/// Every use is inside an interposed `unsafe extern "C" fn` handing on the
/// caller's own arguments, so expanding them in the `unsafe` block hides
/// nothing from its reader.
#[macro_export]
macro_rules! forward {
    ($name:ident: fn($($t:ty),* $(,)?) -> $r:ty, $fail:expr, ($($a:expr),* $(,)?)) => {{
        match real!($name: fn($($t),*) -> $r) {
            // SAFETY: forwarding the caller's own arguments unchanged.
            #[allow(clippy::macro_metavars_in_unsafe)]
            Some(f) => unsafe { f($($a),*) },
            None => {
                $crate::state::set_errno(libc::ENOSYS);
                $fail
            }
        }
    }};
}
