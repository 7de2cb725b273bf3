//! The binary contract between the gateway and a provider plugin: one C entry point,
//! one `#[repr(C)]` record, status codes and a build signature.
//!
//! Everything that crosses the boundary is plain C data or UTF-8 JSON written into a
//! buffer the host owns, so no allocation is ever freed on the other side and no Rust
//! layout (trait objects, `String`, `Vec`) is shared between two compilers' outputs.

/// The ABI version this SDK implements. Bumped only when [`PluginRecord`] or the
/// meaning of a status code changes incompatibly; growing into `reserved` is not a bump.
pub const ABI_VERSION: u32 = 1;

/// Name of the one symbol a plugin exports (see [`EntryFn`]).
pub const ENTRY_SYMBOL: &str = "mailgate_plugin_entry";

/// The functions are `unsafe` to call: the caller must pass pointers valid for the
/// lengths given, as each type's documentation says.
///
/// The entry point: the host offers the highest ABI version it speaks; the plugin
/// answers [`status::OK`] and writes a pointer to its `'static` record, or
/// [`status::UNSUPPORTED_ABI`] when it cannot speak any version up to the offer.
pub type EntryFn =
    unsafe extern "C" fn(host_abi_max: u32, record_out: *mut *const PluginRecord) -> i32;

/// Writes the provider descriptor as UTF-8 JSON into `out[..cap]` and its length into
/// `*out_len`. When `cap` is too small it writes nothing, stores the length it needs in
/// `*out_len` and returns [`status::BUFFER_TOO_SMALL`]; the host retries once.
pub type DescriptorFn = unsafe extern "C" fn(out: *mut u8, cap: usize, out_len: *mut usize) -> i32;

/// Runs the hook named by `name` (UTF-8) on a JSON input; the JSON output follows the
/// same buffer protocol as [`DescriptorFn`]. Unknown names answer [`status::UNKNOWN_HOOK`].
pub type HookFn = unsafe extern "C" fn(
    name: *const u8,
    name_len: usize,
    input: *const u8,
    input_len: usize,
    out: *mut u8,
    cap: usize,
    out_len: *mut usize,
) -> i32;

/// Status codes returned by every function of the ABI.
pub mod status {
    /// Success.
    pub const OK: i32 = 0;
    /// The plugin cannot speak any ABI version up to the host's offer.
    pub const UNSUPPORTED_ABI: i32 = 1;
    /// The output buffer is too small; `*out_len` holds the size needed.
    pub const BUFFER_TOO_SMALL: i32 = 2;
    /// The plugin's code panicked; the panic was caught at the boundary.
    pub const PANIC: i32 = 3;
    /// A pointer was null or an input was not valid UTF-8 / JSON of the expected shape.
    pub const INVALID_INPUT: i32 = 4;
    /// The plugin does not implement the hook that was asked for.
    pub const UNKNOWN_HOOK: i32 = 5;
    /// The plugin's own code failed to produce an answer (e.g. JSON encoding failed).
    pub const INTERNAL: i32 = 6;

    /// A human-readable name for a status code, for error messages.
    pub fn describe(code: i32) -> &'static str {
        match code {
            OK => "ok",
            UNSUPPORTED_ABI => "unsupported ABI version",
            BUFFER_TOO_SMALL => "buffer too small",
            PANIC => "the plugin panicked",
            INVALID_INPUT => "invalid input",
            UNKNOWN_HOOK => "unknown hook",
            INTERNAL => "internal plugin error",
            _ => "unknown status code",
        }
    }
}

/// Length of [`PluginRecord::signature`].
pub const SIGNATURE_LEN: usize = 64;

/// The first two fields of every record version. The host reads these before anything
/// else, so a record from an older or newer plugin is never read past its end.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct RecordHeader {
    /// `size_of::<PluginRecord>()` as the plugin was compiled.
    pub size: u32,
    /// The ABI version the plugin implements.
    pub abi_version: u32,
}

/// What a plugin hands the host (ABI version 1).
#[repr(C)]
#[derive(Debug)]
pub struct PluginRecord {
    /// `size_of::<PluginRecord>()` as the plugin was compiled.
    pub size: u32,
    /// The ABI version the plugin implements.
    pub abi_version: u32,
    /// NUL-padded ASCII describing the build target ([`BUILD_SIGNATURE`]); the host
    /// refuses a plugin built for another architecture, OS, endianness or ABI major.
    pub signature: [u8; SIGNATURE_LEN],
    /// Produces the descriptor JSON.
    pub descriptor_json: DescriptorFn,
    /// Optional hooks; `None` when the plugin is data only.
    pub hook: Option<HookFn>,
    /// Room for growth: zero in version 1, ignored by version-1 hosts.
    pub reserved: [usize; 8],
}

impl PluginRecord {
    /// A version-1 record for this build.
    pub const fn new(descriptor_json: DescriptorFn, hook: Option<HookFn>) -> Self {
        Self {
            size: size_of::<PluginRecord>() as u32,
            abi_version: ABI_VERSION,
            signature: BUILD_SIGNATURE,
            descriptor_json,
            hook,
            reserved: [0; 8],
        }
    }
}

/// The signature of this build: ABI major, architecture, OS, endianness, pointer width.
pub const BUILD_SIGNATURE: [u8; SIGNATURE_LEN] = build_signature();

const fn build_signature() -> [u8; SIGNATURE_LEN] {
    let mut out = [0u8; SIGNATURE_LEN];
    let mut at = 0;
    let endian = if cfg!(target_endian = "little") {
        "le"
    } else {
        "be"
    };
    let width: &str = if cfg!(target_pointer_width = "64") {
        "64"
    } else if cfg!(target_pointer_width = "32") {
        "32"
    } else {
        "16"
    };
    let parts: [&str; 9] = [
        "mailgate-abi/1;",
        std::env::consts::ARCH,
        ";",
        std::env::consts::OS,
        ";",
        endian,
        ";ptr",
        width,
        ";",
    ];
    let mut p = 0;
    while p < parts.len() {
        let bytes = parts[p].as_bytes();
        let mut i = 0;
        // Truncation cannot happen for real targets (the longest is well under 64
        // bytes); if it did, both sides would truncate alike and still compare equal.
        while i < bytes.len() && at < SIGNATURE_LEN {
            out[at] = bytes[i];
            at += 1;
            i += 1;
        }
        p += 1;
    }
    out
}

/// The printable part of a signature (up to the first NUL), lossy for non-ASCII bytes.
pub fn signature_text(signature: &[u8; SIGNATURE_LEN]) -> String {
    let end = signature
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(SIGNATURE_LEN);
    String::from_utf8_lossy(&signature[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_names_this_target() {
        let text = signature_text(&BUILD_SIGNATURE);
        assert!(
            text.starts_with(&format!("mailgate-abi/{ABI_VERSION};")),
            "{text}"
        );
        assert!(text.contains(std::env::consts::ARCH), "{text}");
        assert!(text.contains(std::env::consts::OS), "{text}");
    }

    #[test]
    fn header_is_a_prefix_of_the_record() {
        assert_eq!(std::mem::offset_of!(PluginRecord, size), 0);
        assert_eq!(std::mem::offset_of!(PluginRecord, abi_version), 4);
        assert_eq!(size_of::<RecordHeader>(), 8);
    }
}
