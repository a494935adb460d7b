/** Copying text for the user: the async Clipboard API where the page may use it, else JupyterLab's fallback. */
import { Clipboard } from '@jupyterlab/apputils';

export async function copyText(text: string): Promise<void> {
  if (navigator.clipboard?.writeText) {
    return navigator.clipboard.writeText(text);
  }
  Clipboard.copyToSystem(text); // outside a secure context (plain http to a remote host)
}
