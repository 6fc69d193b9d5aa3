// Text from the database (message keys, consumer ids, error texts: whatever producers,
// workers and handlers chose) goes to a terminal. A control character in it would be
// a command to the terminal (clear the screen, set the title, recolour, move the
// cursor, and with some terminals worse), so it is shown as a visible escape instead.

/** C0 controls except newline, DEL, and the C1 controls (U+009B is CSI, like ESC [). */
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;

const hex = (c: string) => c.charCodeAt(0).toString(16).padStart(2, '0');

/** The text with every control character but newline shown as \xHH (ESC as \x1b). */
export function printable(text: string): string {
  return text.replace(CONTROL, (c) => `\\x${hex(c)}`);
}

/**
 * JSON for a terminal: JSON.stringify escapes C0 controls already, but not DEL and C1;
 * those become \u00HH, which JSON parses back to the same character.
 */
export function printableJson(json: string): string {
  return json.replace(/[\u007f-\u009f]/g, (c) => `\\u00${hex(c)}`);
}
