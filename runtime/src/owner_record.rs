//! The `user.rootlesscontainers` xattr (the format umoci and runc use): a protobuf `Resource { uint32 uid = 1;
//! uint32 gid = 2; }` recording a file's real owner where the one writing it could not chown it (a rootless unpack,
//! a one-id step's `chown` answered by the sandbox). A field left out means "the owner the file has". Shared by
//! the runtime (which records) and the builder's layer code (which reads and writes records).

/// The xattr's name.
pub const NAME: &str = "user.rootlesscontainers";

/// Encode an owner record; fields equal to 0 are left out, as proto3 does.
pub fn encode(uid: u32, gid: u32) -> Vec<u8> {
    let mut out = Vec::new();
    for (tag, v) in [(0x08u8, uid), (0x10u8, gid)] {
        if v != 0 {
            out.push(tag);
            let mut v = v;
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
    }
    out
}

/// Decode an owner record into (uid, gid); `None` for malformed input. A field that is absent decodes as 0
/// (the proto3 default) when the record is present at all.
pub fn decode(bytes: &[u8]) -> Option<(Option<u32>, Option<u32>)> {
    let (mut uid, mut gid) = (Some(0), Some(0));
    let mut i = 0;
    while i < bytes.len() {
        let tag = bytes[i];
        i += 1;
        let mut v: u64 = 0;
        let mut shift = 0;
        loop {
            let b = *bytes.get(i)?;
            i += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
            if shift > 35 {
                return None;
            }
        }
        let v = u32::try_from(v).ok()?;
        match tag {
            0x08 => uid = Some(v),
            0x10 => gid = Some(v),
            _ => return None,
        }
    }
    Some((uid, gid))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trips() {
        for (u, g) in [(0, 0), (1000, 1000), (65534, 0), (0, 300), (u32::MAX - 1, 7)] {
            assert_eq!(super::decode(&super::encode(u, g)), Some((Some(u), Some(g))));
        }
        assert_eq!(super::encode(1000, 0), vec![0x08, 0xe8, 0x07]);
        assert_eq!(super::decode(&[0x18, 1]), None);
    }
}
