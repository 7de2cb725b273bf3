//! Bad plugin: a perfectly ordinary shared library that is not a mailgate plugin.
#![allow(unsafe_code)] // exporting an unmangled symbol is an unsafe attribute

/// Some other library's function, to make the file a real, loadable `.so`.
#[unsafe(no_mangle)]
pub extern "C" fn something_else_entirely() -> i32 {
    42
}
