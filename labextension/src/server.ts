/** The Requester inside JupyterLab: the server's base URL, token and XSRF handling. */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { API_PATH, Requester } from './api';

export function jupyterRequester(settings: ServerConnection.ISettings = ServerConnection.makeSettings()): Requester {
  const root = (base: string) => URLExt.join(base, API_PATH) + '/';
  return {
    request(path, init = {}) {
      return ServerConnection.makeRequest(root(settings.baseUrl) + path, init, settings);
    },
    streamUrl(path, protocol) {
      const url = new URL(root(protocol === 'ws' ? settings.wsUrl : settings.baseUrl) + path, location.href);
      // Same-origin cookies authenticate too; a token (when the page has one) covers the rest.
      if (settings.token) {
        url.searchParams.set('token', settings.token);
      }
      return url.toString();
    }
  };
}
