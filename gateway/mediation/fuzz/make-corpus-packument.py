#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Writes fuzz_packument's seed corpus (run once by hand; the files are committed): real-shaped packuments,
# plain and scoped, each after the target's nine control bytes (see fuzz_packument.c), and one tarball path.
import json
import os
import struct

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, 'corpus', 'packument')
os.makedirs(out, exist_ok=True)


def ver(name, v, extra=None, dist=None):
    base = name.split('/')[-1]
    o = {'name': name, 'version': v}
    o.update(extra or {})
    d = {'shasum': '0123456789abcdef0123456789abcdef01234567',
         'tarball': 'https://npm.test/%s/-/%s-%s.tgz' % (name, base, v),
         'integrity': 'sha512-' + 'A' * 86 + '=='}
    d.update(dist or {})
    o['dist'] = d
    return o


def seed(fname, ctl, keep, too_new, doc):
    b = bytes([ctl]) + struct.pack('<I', keep) + struct.pack('<I', too_new)
    if not isinstance(doc, bytes):
        doc = json.dumps(doc, separators=(',', ':'), ensure_ascii=False).encode()
    with open(os.path.join(out, fname), 'wb') as f:
        f.write(b + doc)


plain = {
    '_id': 'pkg', '_rev': '3-a', 'name': 'pkg', 'description': 'demo',
    'dist-tags': {'latest': '1.2.0', 'next': '2.0.0-rc.1'},
    'versions': {
        '1.0.0': ver('pkg', '1.0.0', {'dependencies': {'a': '^1.0.0'}, 'scripts': {'test': 'tap'}, 'license': 'MIT'}),
        '1.1.0': ver('pkg', '1.1.0', {'bin': {'p': 'bin/p.js'}, 'engines': {'node': '>=14'},
                                      'scripts': {'postinstall': 'node x'}, 'deprecated': 'use 1.2', 'os': ['linux'],
                                      'cpu': ['x64'], 'peerDependenciesMeta': {'b': {'optional': True}}}),
        '1.2.0': ver('pkg', '1.2.0', {'n': 9007199254740993, 'r': 0.5, 's': 'caf\u00e9 \u2603'},
                     {'fileCount': 3, 'unpackedSize': 100}),
        '2.0.0-rc.1': ver('pkg', '2.0.0-rc.1'),
    },
    'time': {'created': '2020-01-01T00:00:00.000Z', 'modified': '2024-06-01T12:00:00.000Z',
             '1.0.0': '2020-01-01T00:00:00.000Z', '1.1.0': '2021-03-04T05:06:07.890Z',
             '1.2.0': '2024-06-01T12:00:00+02:00', '2.0.0-rc.1': '2024-05-01T00:00:00Z'},
    'maintainers': [{'name': 'u', 'email': 'u@example.com'}], 'readme': '# pkg\n', 'users': {'x': True},
    '_attachments': {'pkg-1.2.0.tgz': {'data': 'AAAA'}},
}
scoped = {
    'name': '@scope/pkg', 'dist-tags': {'latest': '0.3.0', 'beta': '0.4.0-beta.2'},
    'versions': {
        '0.2.0': ver('@scope/pkg', '0.2.0', {'bundleDependencies': ['x'], 'libc': ['glibc']},
                     {'signatures': [{'keyid': 'k', 'sig': 'MEUC'}]}),
        '0.3.0': ver('@scope/pkg', '0.3.0', {'_hasShrinkwrap': True, 'hasInstallScript': True, 'directories': {}}),
        '0.4.0-beta.2': ver('@scope/pkg', '0.4.0-beta.2'),
    },
    'time': {'created': '2022-01-01T00:00:00.000Z', 'modified': '2023-01-01T00:00:00.000Z',
             '0.2.0': '2022-01-01T00:00:00.000Z', '0.3.0': '2022-06-01T00:00:00.000Z',
             '0.4.0-beta.2': '2023-01-01T00:00:00.000Z'},
}
seed('plain-full', 0, 0b0101, 0b1000, plain)
seed('plain-abbreviated', 1, 0b0011, 0b1100, plain)
seed('scoped-full', 2, 0b101, 0b010, scoped)
seed('scoped-abbreviated', 3, 0xffffffff, 0, scoped)
seed('odd-keys', 0, 0xffffffff, 0,
     b'{"name":"pkg","dist-tags":{"latest":"v1","x":"1.0.0"},"versions":{"v1":{"version":"v1"},'
     b'"1.0.0":{"version":"1.0.0"},"modified":{"version":"modified"}},"time":{"modified":"2020-01-01T00:00:00Z"}}')
seed('malformed', 0, 1, 0, b'{"name":"pkg","versions":{"1.0.0":{"version":"1.0.1","dist":{"integrity":["x"]}}}}')
with open(os.path.join(out, 'tarball-path'), 'wb') as f:
    f.write(b'@scope/pkg/-/pkg-1.0.0-rc.1+b.5.tgz')
