//! Bad plugin: answers the host's offer with a record claiming an ABI version newer
//! than the host speaks. Hand-written, as a plugin built by a future SDK would be.
#![allow(unsafe_code)] // a deliberately broken export, written without the macro

use mailgate_sdk::abi::{ABI_VERSION, PluginRecord, status};

extern "C" fn descriptor_json(_out: *mut u8, _cap: usize, _out_len: *mut usize) -> i32 {
    status::INTERNAL
}

static RECORD: PluginRecord = {
    let mut record = PluginRecord::new(descriptor_json, None);
    record.abi_version = ABI_VERSION + 1;
    record
};

/// # Safety
/// The host passes a valid out-pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mailgate_plugin_entry(
    _host_abi_max: u32,
    record_out: *mut *const PluginRecord,
) -> i32 {
    // SAFETY: per the ABI the host passes a valid pointer.
    unsafe { record_out.write(&RECORD) };
    status::OK
}
