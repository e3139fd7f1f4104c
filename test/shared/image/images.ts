// Test images made on the fly: smooth and noisy RGB, encoded with our encoders, plus the broken
// inputs the decoder must refuse (truncated files, text, and a real PNG decompression bomb).
import { crc32, deflateSync } from 'node:zlib';
import type { RgbImage } from '../../../src/shared/image/decode.js';
import { encodeJpeg, encodePng } from '../../../src/shared/image/encode.js';
import { mulberry32 } from '../../helpers/random.js';

/** A smooth colour field: no detail near the Nyquist frequency, so resamplers agree closely on it. */
export function smoothRgb(width: number, height: number): RgbImage {
  const data = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      data[o] = Math.round(
        128 + 100 * Math.sin((x / width) * 2 * Math.PI) * Math.cos((y / height) * Math.PI),
      );
      data[o + 1] = Math.round((255 * x) / Math.max(width - 1, 1));
      data[o + 2] = Math.round((255 * y) / Math.max(height - 1, 1));
    }
  }
  return { data, width, height };
}

/** Uniform random bytes from a seeded generator. */
export function noiseRgb(width: number, height: number, seed: number): RgbImage {
  const rand = mulberry32(seed);
  return {
    data: Uint8Array.from({ length: width * height * 3 }, () => Math.floor(rand() * 256)),
    width,
    height,
  };
}

export const png = (img: RgbImage): Promise<Uint8Array> => encodePng(img);
export const jpeg = (img: RgbImage): Promise<Uint8Array> => encodeJpeg(img, { quality: 95 });

/** The first `fraction` of a file, as an interrupted upload leaves it. */
export function truncated(bytes: Uint8Array, fraction: number): Uint8Array {
  return bytes.slice(0, Math.floor(bytes.length * fraction));
}

export const textFile = (): Uint8Array =>
  new TextEncoder().encode('hello, this is not an image\n'.repeat(20));

function chunk(type: string, body: Uint8Array): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, 'latin1');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])) >>> 0, 0);
  return Buffer.concat([head, body, crc]);
}

/**
 * A valid PNG of `width` x `height` black pixels, 1-bit greyscale: every row is a zero filter byte
 * and zero bits, which deflate squeezes ~1000:1. 20000 x 20000 is ~50 KB on disk and 400 million
 * pixels (1.2 GB of RGB) once decoded.
 */
export function bombPng(width: number, height: number): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const raw = Buffer.alloc(height * (1 + Math.ceil(width / 8)));
  const idat = deflateSync(raw, { level: 9 });
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return new Uint8Array(
    Buffer.concat([signature, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', new Uint8Array(0))]),
  );
}
