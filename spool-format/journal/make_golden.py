#!/usr/bin/env python3
"""Writes the golden journal files of this directory from spool-format/README.md ("The
journal") alone, independently of leafmail's own encoder, which the unit tests then check
against them (tests/unit/journal_test.cpp). Run once; the output is committed:

    python3 spool-format/journal/make_golden.py spool-format/journal
"""
import os
import struct
import sys


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def string(s):
    return b"%d %s" % (len(s), s)


def entry(queue_id, content, recipients, queued_at):
    rcpts = b"".join(b" %s 0 0 0 0 " % string(r) for r in recipients)
    archive = (b"22 serialization::archive 18 0 2 " + string(queue_id) + b" %d " % queued_at +
               string(b"smtp") + b" " + string(b"127.0.0.1") + b" " + string(b"client.example") + b" " +
               string(b"alice@example.org") + b" 0 0 %d 1 0 1" % len(recipients) + rcpts +
               b"%d 0 0 0 0\n" % len(content))
    return content + archive + b"\nLEAFMAIL1 %020d\n" % len(content)


def record(sequence, queue_id, entry_octets):
    payload = queue_id + entry_octets
    counted = struct.pack("<QI", sequence, len(payload))
    return b"LMJRNL1\n" + counted + struct.pack("<I", crc32c(payload, crc32c(counted))) + payload


def checkpoint(sequence):
    text = b"LMCKPT1 %020d" % sequence
    return (text + b" %08x\n" % crc32c(text)).ljust(512, b"\0")


def main(out):
    one = b"000660dd5b269cdc-000022dd-0000"
    two = b"000660dd5b26a071-000022dd-0001"
    image = record(41, one, entry(one, b"Subject: journal golden one\r\n\r\nHello.\r\n", [b"bob@example.net"], 1795352400))
    image += record(42, two, entry(two, b"Subject: journal golden two\r\n\r\nTwo recipients.\r\n",
                                   [b"bob@example.net", b"carol@example.net"], 1795352401))
    third = record(43, one, entry(one, b"Subject: torn\r\n\r\nnever flushed\r\n", [b"bob@example.net"], 1795352402))
    image += third[: len(third) // 2]  # a write that a crash cut short: ends the walk
    with open(os.path.join(out, "segment-0"), "wb") as f:
        f.write(image.ljust(4096, b"\0"))
    with open(os.path.join(out, "checkpoint"), "wb") as f:
        f.write(checkpoint(40) + b"\0" * 512)


if __name__ == "__main__":
    main(sys.argv[1])
