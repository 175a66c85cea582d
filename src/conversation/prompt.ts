import type { Message } from './types.ts'

/** A prompt given as a plain string is one user turn. */
export function promptMessages(prompt: string | Message[]): Message[] {
  return typeof prompt === 'string' ? [{ role: 'user', content: prompt }] : prompt
}
