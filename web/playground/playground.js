// The admin API playground: GraphiQL (vendored, served by the relay itself)
// with the relay's token flow. The session token lives in sessionStorage
// (gone with the tab; never a cookie, so no CSRF) and is sent as
// `Authorization: Bearer` on HTTP and in `connection_init` on the
// WebSocket (graphql-transport-ws at /graphql/ws), which is how the admin
// API authenticates subscriptions.
(function () {
  'use strict';
  var STORAGE = 'claude-relay.admin-token';
  var bar = document.getElementById('bar');
  var message = document.getElementById('message');
  var who = document.getElementById('who');
  var logoutButton = document.getElementById('logout');
  var wsUrl = (location.protocol === 'https:' ? 'wss:' : 'ws:') + '//' + location.host + '/graphql/ws';
  var root = ReactDOM.createRoot(document.getElementById('graphiql'));
  var wsClient = null;

  function token() { return sessionStorage.getItem(STORAGE) || ''; }

  function post(query, variables) {
    var headers = { 'Content-Type': 'application/json' };
    if (token()) headers.Authorization = 'Bearer ' + token();
    return fetch('/graphql', {
      method: 'POST',
      headers: headers,
      body: JSON.stringify({ query: query, variables: variables || {} })
    }).then(function (r) { return r.json(); });
  }

  function firstError(resp) {
    return resp && resp.errors && resp.errors.length ? resp.errors[0].message : null;
  }

  function setToken(t) {
    if (t) sessionStorage.setItem(STORAGE, t); else sessionStorage.removeItem(STORAGE);
    refresh();
  }

  function fetcher() {
    if (wsClient) wsClient.dispose();
    wsClient = graphqlWs.createClient({
      url: wsUrl,
      lazy: true,
      connectionParams: function () {
        return token() ? { authorization: 'Bearer ' + token() } : {};
      }
    });
    return GraphiQL.createFetcher({
      url: '/graphql',
      wsClient: wsClient,
      enableIncrementalDelivery: false,
      fetch: function (url, init) {
        init = init || {};
        var headers = new Headers(init.headers || {});
        if (token() && !headers.has('Authorization')) headers.set('Authorization', 'Bearer ' + token());
        init.headers = headers;
        return fetch(url, init);
      }
    });
  }

  function refresh() {
    var t = token();
    bar.setAttribute('data-auth', t ? 'yes' : 'no');
    logoutButton.hidden = !t;
    who.textContent = '';
    if (t) {
      post('{ me { username role } }').then(function (resp) {
        var err = firstError(resp);
        if (err) { message.textContent = err; sessionStorage.removeItem(STORAGE); refresh(); return; }
        who.textContent = resp.data.me.username + ' (' + resp.data.me.role + ')';
      }, function () { message.textContent = 'the relay did not answer'; });
    }
    // A new key remounts GraphiQL with a fetcher (and socket) for this token.
    root.render(React.createElement(GraphiQL, {
      key: t ? 'token' : 'anonymous',
      fetcher: fetcher(),
      defaultEditorToolsVisibility: true,
      defaultQuery: '# Log in above, then try:\n{ me { username role } }\n'
    }));
  }

  document.getElementById('login').addEventListener('submit', function (e) {
    e.preventDefault();
    message.textContent = '';
    var u = document.getElementById('username');
    var p = document.getElementById('password');
    post('mutation Login($u: String!, $p: String!) { login(username: $u, password: $p) { token } }',
      { u: u.value, p: p.value }).then(function (resp) {
      p.value = '';
      var err = firstError(resp);
      if (err) { message.textContent = err; return; }
      setToken(resp.data.login.token);
    }, function () { message.textContent = 'the relay did not answer'; });
  });

  document.getElementById('token-form').addEventListener('submit', function (e) {
    e.preventDefault();
    message.textContent = '';
    var input = document.getElementById('token');
    var t = input.value.trim().replace(/^Bearer\s+/i, '');
    input.value = '';
    setToken(t);
  });

  logoutButton.addEventListener('click', function () {
    post('mutation Logout { logout { revokedSessions } }').then(function () { setToken(''); },
      function () { setToken(''); });
  });

  refresh();
})();
