// The admin API client: the session token from sessionStorage as a bearer
// token, JSON in and out, and every failure as an ApiError with the server's
// stable code and, for validation failures, its field errors.

const KEY = 'rampart.session';

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY));
  } catch {
    return null;
  }
}

export function setSession(s) {
  sessionStorage.setItem(KEY, JSON.stringify(s));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const e = body?.error ?? {};
    super(e.message || `The server answered ${status}`);
    this.status = status;
    this.code = e.code || 'unknown';
    this.details = e.details || [];
    if (this.code === 'version_mismatch') {
      // The server's text speaks to API clients (If-Match); say it for people.
      this.message = 'Someone else changed this after you opened it. Nothing was saved: reload the page to see their change, then make yours again.';
      this.details = [];
    }
  }
}

let unauthorized = () => {};
/** What to do when the session is refused (expired, revoked). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

export async function api(method, path, body, extra = {}) {
  return (await request(method, path, body, extra)).data;
}

/** One page of a paged list: its items, how many match in all (a first
 * page only; `null` after), and the cursor of the next page (none on the
 * last). */
export async function getPage(path) {
  const { data, headers } = await request('GET', path);
  // Only a first page carries the total (the pages after share it).
  const counted = headers.get('X-Total-Count');
  return { items: data, total: counted === null ? null : Number(counted), next: headers.get('X-Next-Cursor') };
}

async function request(method, path, body, extra = {}) {
  const headers = { Accept: 'application/json', ...extra };
  const s = session();
  if (s?.token) headers.Authorization = `Bearer ${s.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network', message: `The server cannot be reached (${e.message}).` } });
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (res.status === 401 && path !== '/login') {
    clearSession();
    unauthorized();
  }
  if (!res.ok) throw new ApiError(res.status, data);
  return { data, headers: res.headers };
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);
/** A PUT of a change based on `version` (If-Match): refused with 412
 * version_mismatch if someone else changed the object since. */
export const put = (path, body, version) =>
  api('PUT', path, body, version === undefined ? {} : { 'If-Match': `"${version}"` });
export const del = (path) => api('DELETE', path);

/** `encodeURIComponent` for a path segment. */
export const seg = (s) => encodeURIComponent(s);

export function can(role) {
  const order = { read_only: 0, security_manager: 1, global_admin: 2 };
  const mine = session()?.role;
  return (order[mine] ?? -1) >= order[role];
}

let catalogCache = null;
/** The settings catalog by setting id (fetched once per page load). */
export async function catalogMap() {
  if (!catalogCache) {
    catalogCache = get('/catalog').then((list) => new Map(list.map((d) => [d.id, d])));
    catalogCache.catch(() => { catalogCache = null; });
  }
  return catalogCache;
}
