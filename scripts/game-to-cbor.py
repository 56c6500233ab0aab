#!/usr/bin/env python3
"""A JSON game as the same document in CBOR, each column an RFC 8746 typed
array of little-endian float32 (tag 85): python3 scripts/game-to-cbor.py
game.json > game.cbor. Needs cbor2 (pip install cbor2)."""
import array, json, sys
import cbor2

game = json.load(open(sys.argv[1]))
for name, column in game["channels"].items():
    samples = array.array("f", column)          # float32
    if sys.byteorder == "big":
        samples.byteswap()                      # tag 85 is little-endian
    game["channels"][name] = cbor2.CBORTag(85, samples.tobytes())
sys.stdout.buffer.write(cbor2.dumps(game))
