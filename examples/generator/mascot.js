// Draws a mascot from a name: the same name always gives the same SVG (no AI, no randomness).
// A 32-bit FNV-1a hash of the name picks the colours, the shape, the eyes, the mouth and the ears.

const PALETTE = [
  ["#ff8a65", "#fff3e0"],
  ["#4fc3f7", "#e1f5fe"],
  ["#81c784", "#e8f5e9"],
  ["#ba68c8", "#f3e5f5"],
  ["#ffd54f", "#fffde7"],
  ["#f06292", "#fce4ec"],
  ["#4db6ac", "#e0f2f1"],
  ["#9575cd", "#ede7f6"],
];

/** @param {string} text */
function fnv1a(text) {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(text)) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** @param {string} text */
export function escapeXml(text) {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** The name as it is drawn and hashed: trimmed, NFC, inner white space collapsed. */
export function normaliseName(name) {
  return String(name).normalize("NFC").trim().replace(/\s+/g, " ");
}

/**
 * @param {string} name
 * @returns {string} an SVG document, 160×160
 */
export function drawMascot(name) {
  const clean = normaliseName(name);
  const h = fnv1a(clean.toLowerCase());
  const pick = (/** @type {number} */ shift, /** @type {number} */ n) => (h >>> shift) % n;
  const [body, background] = PALETTE[pick(0, PALETTE.length)];
  const shape = pick(3, 3);
  const eyes = pick(5, 3);
  const mouth = pick(7, 3);
  const ears = pick(9, 4);
  const spacing = 14 + pick(11, 3) * 3;
  const initial = escapeXml([...clean][0]?.toUpperCase() ?? "?");

  const parts = [];
  // Ears or antenna, behind the body.
  if (ears === 1) parts.push(`<path d="M48 62 L56 24 L74 52 Z M112 62 L104 24 L86 52 Z" fill="${body}"/>`);
  if (ears === 2) parts.push(`<line x1="80" y1="40" x2="80" y2="18" stroke="#37474f" stroke-width="3"/><circle cx="80" cy="16" r="6" fill="${body}"/>`);
  if (ears === 3) parts.push(`<ellipse cx="62" cy="30" rx="9" ry="24" fill="${body}"/><ellipse cx="98" cy="30" rx="9" ry="24" fill="${body}"/>`);
  // The body.
  if (shape === 0) parts.push(`<circle cx="80" cy="92" r="52" fill="${body}"/>`);
  if (shape === 1) parts.push(`<rect x="30" y="42" width="100" height="100" rx="28" fill="${body}"/>`);
  if (shape === 2) parts.push(`<ellipse cx="80" cy="94" rx="56" ry="48" fill="${body}"/>`);
  // The belly with the name's initial.
  parts.push(`<ellipse cx="80" cy="118" rx="24" ry="18" fill="#ffffff" fill-opacity="0.55"/>`);
  parts.push(`<text x="80" y="125" text-anchor="middle" font-family="system-ui, sans-serif" font-size="20" font-weight="700" fill="#37474f">${initial}</text>`);
  // Eyes.
  const [lx, rx] = [80 - spacing, 80 + spacing];
  if (eyes === 0) parts.push(`<circle cx="${lx}" cy="82" r="8" fill="#fff"/><circle cx="${rx}" cy="82" r="8" fill="#fff"/><circle cx="${lx + 2}" cy="83" r="4" fill="#263238"/><circle cx="${rx + 2}" cy="83" r="4" fill="#263238"/>`);
  if (eyes === 1) parts.push(`<path d="M${lx - 7} 84 Q${lx} 76 ${lx + 7} 84 M${rx - 7} 84 Q${rx} 76 ${rx + 7} 84" stroke="#263238" stroke-width="3" fill="none" stroke-linecap="round"/>`);
  if (eyes === 2) parts.push(`<line x1="${lx - 7}" y1="82" x2="${lx + 7}" y2="82" stroke="#263238" stroke-width="3" stroke-linecap="round"/><line x1="${rx - 7}" y1="82" x2="${rx + 7}" y2="82" stroke="#263238" stroke-width="3" stroke-linecap="round"/>`);
  // Mouth.
  if (mouth === 0) parts.push(`<path d="M68 98 Q80 108 92 98" stroke="#263238" stroke-width="3" fill="none" stroke-linecap="round"/>`);
  if (mouth === 1) parts.push(`<ellipse cx="80" cy="101" rx="7" ry="5" fill="#263238"/>`);
  if (mouth === 2) parts.push(`<line x1="72" y1="100" x2="88" y2="100" stroke="#263238" stroke-width="3" stroke-linecap="round"/>`);
  // Cheeks.
  parts.push(`<circle cx="${lx - 8}" cy="96" r="5" fill="#ff5252" fill-opacity="0.25"/><circle cx="${rx + 8}" cy="96" r="5" fill="#ff5252" fill-opacity="0.25"/>`);

  return `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 160" width="160" height="160" role="img"><title>${escapeXml(`A mascot named ${clean}`)}</title><rect width="160" height="160" rx="16" fill="${background}"/>${parts.join("")}</svg>`;
}
