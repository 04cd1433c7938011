/**
 * The bytes the sources look for without decoding text (line framing, shape
 * classification, the gcloud array decoder): one definition, so that every
 * byte-level scan agrees on what a newline or a brace is.
 */
export const NL = 0x0a;
export const CR = 0x0d;
export const TAB = 0x09;
export const SP = 0x20;
export const QUOTE = 0x22;
export const COMMA = 0x2c;
export const BACKSLASH = 0x5c;
export const LBRACKET = 0x5b;
export const RBRACKET = 0x5d;
export const LBRACE = 0x7b;
export const RBRACE = 0x7d;
