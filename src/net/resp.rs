//! Packing commands in RESP into reused buffers (no allocation once warm),
//! and finding a command's key again in a packed batch.

/// Packs commands in RESP into a reused buffer.
#[derive(Default)]
pub(crate) struct Packer {
    pub(crate) buf: Vec<u8>,
    pub(crate) commands: usize,
}

impl Packer {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.commands = 0;
    }

    pub(crate) fn array(&mut self, n: usize) {
        self.commands += 1;
        self.buf.push(b'*');
        push_int(&mut self.buf, n);
        self.buf.extend_from_slice(b"\r\n");
    }

    pub(crate) fn bulk(&mut self, b: &[u8]) {
        push_bulk(&mut self.buf, b);
    }

    pub(crate) fn cmd(&mut self, args: &[&[u8]]) {
        self.array(args.len());
        for a in args {
            self.bulk(a);
        }
    }

    /// One command: `head` followed by the arguments collected in `args`.
    pub(crate) fn cmd_args(&mut self, head: &[&[u8]], args: &Args) {
        self.array(head.len() + args.n);
        for h in head {
            self.bulk(h);
        }
        self.buf.extend_from_slice(&args.buf);
    }
}

/// The arguments of one variadic command (`MSET`, `SADD`, `RPUSH`, …),
/// packed as they come, for commands whose length is known only at the end.
#[derive(Default)]
pub(crate) struct Args {
    pub(crate) buf: Vec<u8>,
    pub(crate) n: usize,
}

impl Args {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.n = 0;
    }

    pub(crate) fn bulk(&mut self, b: &[u8]) {
        push_bulk(&mut self.buf, b);
        self.n += 1;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.n == 0
    }
}

/// The key (first argument) of the `n`-th command (from 0) in packed
/// RESP `buf`; `None` if there is no such command or argument.
pub(crate) fn command_key(buf: &[u8], n: usize) -> Option<&[u8]> {
    command_name_key(buf, n).map(|(_, key)| key)
}

/// The name and the key of the `n`-th command (from 0) in packed RESP
/// `buf`. Only used after Redis refused a command or a reply was lost, so
/// a linear walk is fine.
pub(crate) fn command_name_key(buf: &[u8], n: usize) -> Option<(&[u8], &[u8])> {
    /// Reads one `{tag}{number}\r\n` header line.
    fn line(rest: &mut &[u8], tag: u8) -> Option<usize> {
        let end = rest.windows(2).position(|w| w == b"\r\n")?;
        let (head, tail) = rest.split_at(end);
        *rest = &tail[2..];
        let (&t, digits) = head.split_first()?;
        if t != tag {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    }
    let mut rest = buf;
    for i in 0..=n {
        let argc = line(&mut rest, b'*')?;
        let mut name: &[u8] = &[];
        for a in 0..argc {
            let len = line(&mut rest, b'$')?;
            let arg = rest.get(..len)?;
            rest = rest.get(len + 2..)?;
            if i == n && a == 0 {
                name = arg;
            }
            if i == n && a == 1 {
                return Some((name, arg));
            }
        }
        if i == n {
            return None;
        }
    }
    None
}

/// One RESP bulk string: `$len\r\nbytes\r\n`.
fn push_bulk(buf: &mut Vec<u8>, b: &[u8]) {
    buf.push(b'$');
    push_int(buf, b.len());
    buf.extend_from_slice(b"\r\n");
    buf.extend_from_slice(b);
    buf.extend_from_slice(b"\r\n");
}

fn push_int(buf: &mut Vec<u8>, n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = n;
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_and_keys() {
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"SADD", b"t:index:orders", b"O-1"]);
        p.cmd(&[b"RPUSH", b"t:orders:O-1:events", b"x"]);
        assert_eq!(command_name_key(&p.buf, 0), None);
        assert_eq!(command_name_key(&p.buf, 1), Some((&b"SADD"[..], &b"t:index:orders"[..])));
        assert_eq!(command_name_key(&p.buf, 2), Some((&b"RPUSH"[..], &b"t:orders:O-1:events"[..])));
        assert_eq!(command_name_key(&p.buf, 3), None);
    }

    #[test]
    fn packer_resp() {
        let mut p = Packer::default();
        p.cmd(&[b"SET", b"k", b"v"]);
        assert_eq!(p.buf, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
        assert_eq!(p.commands, 1);
    }

    #[test]
    fn packer_key_of() {
        let mut p = Packer::default();
        p.cmd(&[b"MULTI"]);
        p.cmd(&[b"SET", b"k\r\n1", b"v"]);
        p.array(4);
        p.bulk(b"RPUSH");
        p.bulk(b"k2");
        p.bulk(b"a");
        p.bulk(b"b");
        p.cmd(&[b"EXEC"]);
        assert_eq!(command_key(&p.buf, 0), None);
        assert_eq!(command_key(&p.buf, 1), Some(&b"k\r\n1"[..]));
        assert_eq!(command_key(&p.buf, 2), Some(&b"k2"[..]));
        assert_eq!(command_key(&p.buf, 3), None);
        assert_eq!(command_key(&p.buf, 4), None);
        p.buf.truncate(p.buf.len() - 5); // a torn buffer is not a panic
        assert_eq!(command_key(&p.buf, 3), None);
    }

    #[test]
    fn variadic_args() {
        let mut a = Args::default();
        a.bulk(b"k");
        a.bulk(b"");
        let mut p = Packer::default();
        p.cmd_args(&[b"SADD", b"i"], &a);
        assert_eq!(p.buf, b"*4\r\n$4\r\nSADD\r\n$1\r\ni\r\n$1\r\nk\r\n$0\r\n\r\n");
        assert_eq!(p.commands, 1);
    }
}
