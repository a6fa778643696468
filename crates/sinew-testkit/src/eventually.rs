//! `assert_eventually!`: poll a condition until it holds or a deadline passes.

/// Polls `cond` (which may contain `.await`) every 10 ms until it is true,
/// panicking when `timeout` (default 5 s) passes first.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let start = std::time::Instant::now();
/// sinew_testkit::assert_eventually!(start.elapsed() >= std::time::Duration::from_millis(20));
/// sinew_testkit::assert_eventually!(true, std::time::Duration::from_secs(1), "never {}", "false");
/// # }
/// ```
#[macro_export]
macro_rules! assert_eventually {
    ($cond:expr) => {
        $crate::assert_eventually!($cond, ::std::time::Duration::from_secs(5))
    };
    ($cond:expr, $timeout:expr) => {
        $crate::assert_eventually!($cond, $timeout, "condition `{}`", stringify!($cond))
    };
    ($cond:expr, $timeout:expr, $($msg:tt)+) => {{
        let timeout: ::std::time::Duration = $timeout;
        let deadline = ::std::time::Instant::now() + timeout;
        loop {
            if $cond {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!("not true within {:?}: {}", timeout, format_args!($($msg)+));
            }
            $crate::__private::tokio::time::sleep(::std::time::Duration::from_millis(10)).await;
        }
    }};
}
